"""A Label Studio connection: the SDK client plus a clear error when the server is down."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from core.errors import StudioError
from core.settings import Settings

T = TypeVar("T")


class StudioUnavailableError(StudioError):
    """Label Studio cannot be reached or refused our token; nothing was changed."""


class StudioRequestError(StudioError):
    """Label Studio answered but refused the request (the message says why)."""


@dataclass
class Studio:
    url: str
    token: str
    sdk: LabelStudio

    def call(self, fn: Callable[[], T]) -> T:
        with studio_errors(self.url):
            return fn()

    def http(self) -> httpx.Client:
        """A raw client for the few endpoints the SDK does not cover."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Token {self.token}"}, timeout=30.0
        )


@contextmanager
def studio_errors(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:
        raise StudioUnavailableError(
            f"Label Studio at {url} is not reachable ({type(exc).__name__}): start it "
            "(`labeler demo`) or set LABELER_STUDIO_URL"
        ) from exc
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise StudioUnavailableError(
                f"Label Studio at {url} refused the API token ({exc.status_code}): check "
                "LABELER_STUDIO_TOKEN and LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true"
            ) from exc
        raise StudioRequestError(
            f"Label Studio answered HTTP {exc.status_code}: {_why(exc.body)}"
        ) from exc


def _why(body: object) -> str:
    if isinstance(body, dict):
        errors = body.get("validation_errors") or body.get("detail") or body
        return str(errors)[:500]
    return str(body)[:500]


def connect(settings: Settings) -> Studio:
    """Connect as the admin and check the token once, so later calls fail only for real."""
    url = settings.studio_url.rstrip("/")
    token = settings.studio_api_token()
    studio = Studio(url, token, LabelStudio(base_url=url, api_key=token, timeout=60.0))  # type: ignore[no-untyped-call]
    studio.call(studio.sdk.users.whoami)
    return studio
