"""Optional auth: none, HTTP basic (what Label Studio sends) or a bearer token."""

from __future__ import annotations

import base64
import binascii
import secrets

from fastapi import HTTPException, Request, status

from db.settings import Settings


def check_auth(settings: Settings, request: Request) -> None:
    if settings.backend_auth == "none":
        return
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if settings.backend_auth == "bearer" and settings.backend_token is not None:
        if scheme.lower() == "bearer" and _same(value, settings.backend_token.get_secret_value()):
            return
        _refuse("Bearer")
    if settings.backend_auth == "basic" and settings.backend_password is not None:
        user, password = _basic(value) if scheme.lower() == "basic" else ("", "")
        expected = settings.backend_password.get_secret_value()
        if _same(user, settings.backend_user) and _same(password, expected):
            return
        _refuse("Basic")
    raise HTTPException(
        status.HTTP_500_INTERNAL_SERVER_ERROR, "backend auth is on without a secret"
    )


def _basic(value: str) -> tuple[str, str]:
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return user, password


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


def _refuse(scheme: str) -> None:
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "authentication required",
        headers={"WWW-Authenticate": f'{scheme} realm="labeler"'},
    )
