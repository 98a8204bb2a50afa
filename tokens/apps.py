from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Tokens and signing keys"

    def ready(self) -> None:
        from tokens import browser, schema  # noqa: F401 - sign-in receivers; OpenAPI scheme
