"""Run examples/webapp (the relying-party demo) as a real process for black-box tests."""

from __future__ import annotations

from tests.live import ROOT, ServerProcess, foreign_env


class Webapp(ServerProcess):
    """examples/webapp under gunicorn on 127.0.0.1, addressed as http://localhost:<port> so the
    browser treats it as another site than authserver on 127.0.0.1."""

    name = "webapp"
    host = "localhost"

    def __init__(self, issuer: str, client_id: str, client_secret: str = "", port: int = 0):
        env = foreign_env(
            DJANGO_SETTINGS_MODULE="webapp.settings",
            WEBAPP_AUTHSERVER_ISSUER=issuer,
            WEBAPP_CLIENT_ID=client_id,
            WEBAPP_CLIENT_SECRET=client_secret,
        )
        super().__init__(env, port=port, cwd=ROOT / "examples" / "webapp")

    def arguments(self) -> list[str]:
        return ["webapp.wsgi", "--workers", "1"]
