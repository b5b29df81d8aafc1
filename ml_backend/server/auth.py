"""Optional auth: none, HTTP basic (what Label Studio sends) or a bearer token.

Checked by the guard middleware from the request's headers alone, before any body is read. Auth
switched on without its secret is a settings error: `create_app` refuses to build the app (and
`labeler serve` to start) instead of answering 500 on every route while /health says UP.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

from core.settings import Settings
from ml_backend.server.errors import BackendConfigError


@dataclass(frozen=True)
class Credentials:
    """What a request must carry: a scheme and the secret(s); None when auth is off."""

    scheme: str
    user: str
    secret: str

    def challenge(self) -> str:
        return f'{self.scheme} realm="labeler"'

    def accepts(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != self.scheme.lower():
            return False
        if self.scheme == "Bearer":
            return _same(value.strip(), self.secret)
        user, password = _basic(value.strip())
        return _same(user, self.user) & _same(password, self.secret)


def credentials(settings: Settings) -> Credentials | None:
    """The credentials requests must carry; BackendConfigError when auth is on without a secret."""
    if settings.backend_auth == "none":
        return None
    if settings.backend_auth == "bearer":
        token = settings.backend_token.get_secret_value() if settings.backend_token else ""
        if not token:
            raise BackendConfigError(
                "LABELER_BACKEND_AUTH=bearer needs LABELER_BACKEND_TOKEN: set it or turn auth off"
            )
        return Credentials("Bearer", "", token)
    password = settings.backend_password.get_secret_value() if settings.backend_password else ""
    if not password:
        raise BackendConfigError(
            "LABELER_BACKEND_AUTH=basic needs LABELER_BACKEND_PASSWORD: set it or turn auth off"
        )
    return Credentials("Basic", settings.backend_user, password)


def _basic(value: str) -> tuple[str, str]:
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return "", ""
    return user, password


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())
