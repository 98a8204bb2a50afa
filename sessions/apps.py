from django.apps import AppConfig


class SessionsConfig(AppConfig):
    """Sign-ins and refresh tokens (the signing keys that sign their tokens live in tokens/).

    Label `authsessions`: `sessions` is django.contrib.sessions', which keeps the browser's
    session cookie data; this app keeps the sign-ins themselves.
    """

    name = "sessions"
    label = "authsessions"
    verbose_name = "Sessions"

    def ready(self) -> None:
        from sessions import browser  # noqa: F401 - the sign-in / sign-out receivers
