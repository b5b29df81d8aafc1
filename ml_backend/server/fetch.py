"""Image downloads: only from Label Studio's own host and LABELER_IMAGE_HOSTS, streamed and capped.

A task's URL is attacker-chosen, so the backend must not become a port scanner (SSRF, issue 12
item 5): hosts outside the allow-list are refused before any connection, redirects are not
followed, proxies from the environment are ignored, and every failure once connected (refused
port, open port that is not HTTP, 404, timeout, DNS) answers the same text. The Label Studio
token goes only to Label Studio's own origin. Bodies are streamed and dropped at the cap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from core.settings import Settings
from ml_backend.server.errors import ImageRefused, ImageTooLarge, ImageUnavailable

FETCH_FAILED = "image could not be fetched"
HOST_REFUSED = "image host is not allowed: Label Studio's own host or LABELER_IMAGE_HOSTS only"
DEFAULT_PORTS = {"http": 80, "https": 443}
CONNECT_S = 5.0
READ_S = 10.0
TOTAL_S = 20.0

Origin = tuple[str, int]  # (lower-case host name, port)


def origin_of(url: str) -> Origin | None:
    """(host, port) of an http(s) URL; None for anything else or a malformed one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[parts.scheme]


@dataclass(frozen=True)
class HostRule:
    """One LABELER_IMAGE_HOSTS entry: `host` (ports 80/443) or `host:port`, or a URL."""

    host: str
    port: int | None

    @classmethod
    def parse(cls, entry: str) -> HostRule | None:
        text = entry.strip()
        origin = origin_of(text if "://" in text else f"http://{text}")
        if origin is None:
            return None
        explicit = "://" in text or urlsplit(f"http://{text}").port is not None
        return cls(origin[0], origin[1] if explicit else None)

    def allows(self, origin: Origin) -> bool:
        host, port = origin
        ports = (self.port,) if self.port is not None else tuple(DEFAULT_PORTS.values())
        return host == self.host and port in ports


@dataclass(frozen=True)
class FetchPolicy:
    """Where images may come from, and where Label Studio (and its token) is."""

    studio_url: str
    rules: tuple[HostRule, ...]
    token: str | None = None
    max_bytes: int = 50 * 1024 * 1024

    @classmethod
    def for_settings(cls, settings: Settings) -> FetchPolicy:
        rules = tuple(r for r in map(HostRule.parse, settings.image_hosts) if r is not None)
        return cls(settings.studio_url, rules, None, settings.max_download_bytes)

    @property
    def studio(self) -> Origin | None:
        return origin_of(self.studio_url)

    def allows(self, url: str) -> bool:
        origin = origin_of(url)
        if origin is None:
            return False
        return origin == self.studio or any(rule.allows(origin) for rule in self.rules)

    def with_setup(self, hostname: str | None, token: str | None) -> FetchPolicy:
        """What /setup told us. Its hostname is taken only if it is this policy's Label Studio
        or an allowed host; any other is ignored, and the token then goes to LABELER_STUDIO_URL
        (ours), so a caller can neither redirect fetches nor collect a token."""
        url = hostname.strip() if hostname else self.studio_url
        if origin_of(url) is None or not self.allows(url):
            url = self.studio_url
        return FetchPolicy(url, self.rules, token or None, self.max_bytes)


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """The body of an allowed URL, at most `policy.max_bytes`; one error text for any failure."""
    if not policy.allows(url):
        raise ImageRefused(HOST_REFUSED)
    headers = {"Accept-Encoding": "identity"}
    if policy.token and origin_of(url) == policy.studio:
        headers["Authorization"] = f"Token {policy.token}"
    timeout = httpx.Timeout(READ_S, connect=CONNECT_S)
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            return _body(response, policy.max_bytes, time.monotonic() + TOTAL_S)
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError, UnicodeError) as exc:
        raise ImageUnavailable(FETCH_FAILED) from exc


def _body(response: httpx.Response, limit: int, deadline: float) -> bytes:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if response.status_code != 200 or encoding not in ("", "identity"):
        raise ImageUnavailable(FETCH_FAILED)
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise ImageTooLarge(f"image download is larger than {limit} bytes")
    data = bytearray()
    for chunk in response.iter_raw():
        data += chunk
        if len(data) > limit:
            raise ImageTooLarge(f"image download is larger than {limit} bytes")
        if time.monotonic() > deadline:
            raise ImageUnavailable(FETCH_FAILED)
    return bytes(data)
