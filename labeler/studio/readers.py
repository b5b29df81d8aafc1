"""Reader accounts: created through Label Studio's invite link, each with its own API token.

Open-source Label Studio has no admin API that sets a password, so an account is made the way a
radiologist would make it (sign-up form with the organization's invite token) and its token is
read back through a logged-in session. Passwords are generated once and kept under home.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from core.settings import Settings
from labeler.studio.client import Studio, StudioRequestError, studio_errors


@dataclass(frozen=True)
class ReaderAccount:
    name: str
    email: str
    password: str
    token: str


def reader_email(name: str) -> str:
    return name if "@" in name else f"{name}@labeler.local"


def reader_password_key(email: str) -> str:
    return f"reader_password:{email}"


def stored_logins(settings: Settings) -> list[tuple[str, str, str | None]]:
    """(role, email, password or None when not made yet) of the admin and every reader, as kept
    in LABELER_HOME/.secrets.json; reading makes nothing."""
    admin = ("admin", settings.studio_admin_email, settings.stored_secret("studio_admin_password"))
    readers = [
        ("reader", email, settings.stored_secret(reader_password_key(email)))
        for email in map(reader_email, settings.readers)
    ]
    return [admin, *readers]


def ensure_readers(studio: Studio, settings: Settings) -> list[ReaderAccount]:
    """Each configured reader exists in the organization and has a token (idempotent)."""
    with studio.http() as admin, studio_errors(studio.url):
        invite = admin.get("/api/invite").raise_for_status().json()["token"]
    return [_ensure_reader(studio.url, name, settings, invite) for name in settings.readers]


def _ensure_reader(url: str, name: str, settings: Settings, invite: str) -> ReaderAccount:
    email = reader_email(name)
    password = settings.secret(reader_password_key(email))
    with httpx.Client(base_url=url, timeout=30.0) as web, studio_errors(url):
        if not _login(web, email, password):
            _signup(web, email, password, invite)
        token = web.get("/api/current-user/token").raise_for_status().json()["token"]
    return ReaderAccount(name, email, password, str(token))


def _form(web: httpx.Client, path: str, fields: dict[str, str]) -> httpx.Response:
    web.get(path)
    csrf = web.cookies.get("csrftoken") or ""
    return web.post(
        path,
        data={**fields, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{web.base_url}{path}"},
    )


def _login(web: httpx.Client, email: str, password: str) -> bool:
    _form(web, "/user/login/", {"email": email, "password": password})
    return web.get("/api/current-user/whoami").status_code == 200


def _signup(web: httpx.Client, email: str, password: str, invite: str) -> None:
    path = f"/user/signup/?token={invite}"
    response = _form(web, path, {"email": email, "password": password, "how_find_us": ""})
    if response.status_code != 302 or web.get("/api/current-user/whoami").status_code != 200:
        raise StudioRequestError(
            f"could not create reader {email} in Label Studio (HTTP {response.status_code}); "
            "if the account exists with another password, reset it with "
            "`label-studio reset_password`"
        )
