"""Signed download links: a browser link cannot carry an ``Authorization`` header.

``POST /-/links`` with ``{"path": "/dicom-web/studies/{study}[/series/{series}]"}`` asks the
upstream, *with the caller's own credentials*, whether the caller may see that study or series
(a QIDO query scoped to its UIDs). If so it answers a URL valid for ``--link-ttl`` seconds:

    {path}?accept=application/zip&zp-link={expires}.{signature}

The signature is HMAC-SHA256 over the path and the expiry with ``--link-secret`` (shared by every
worker and replica). A request carrying a valid ``zp-link`` for its own path is a ZIP download made
with the proxy's ``--upstream-auth`` credentials; the client's Authorization and Cookie headers
are not forwarded. The token only opens that one study or series as a ZIP until it expires; it
never appears in logs (request lines log the path, never the query).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Final
from urllib.parse import quote

from aiohttp import web

from . import qido
from .errors import BadRequest, Forbidden, TooLarge, UpstreamBodyError, UpstreamStatus
from .forwarding import upstream_headers
from .negotiation import is_valid_uid
from .routes import Resource, match_resource
from .upstream import Upstream

PARAM: Final = "zp-link"


class LinkSigner:
    def __init__(self, secret: str, ttl: float) -> None:
        self._key = hashlib.sha256(b"zipproxy-link-v1\0" + secret.encode()).digest()
        self.ttl = ttl

    def _mac(self, path: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")

    def sign(self, path: str, now: float | None = None) -> tuple[str, int]:
        expires = int((time.time() if now is None else now) + self.ttl)
        return f"{expires}.{self._mac(path, expires)}", expires

    def verify(self, path: str, token: str, now: float | None = None) -> None:
        """Raise Forbidden unless ``token`` was signed for ``path`` and has not expired."""
        expires_text, _, mac = token.partition(".")
        if not expires_text.isdigit() or len(expires_text) > 12:
            raise Forbidden("malformed download link")
        expires = int(expires_text)
        if not hmac.compare_digest(mac, self._mac(path, expires)):
            raise Forbidden("invalid download link")
        if (time.time() if now is None else now) > expires:
            raise Forbidden("download link expired; ask for a new one")


def _qido_check(resource: Resource) -> tuple[str, str]:
    """The QIDO path and query that list exactly the resource (PS3.18 10.6)."""
    if resource.series:
        return (f"{resource.prefix}/studies/{resource.study}/series",
                f"SeriesInstanceUID={resource.series}")
    return f"{resource.prefix}/studies", f"StudyInstanceUID={resource.study}"


async def create_link(request: web.Request, upstream: Upstream, signer: LinkSigner,
                      public_url: str = "") -> web.Response:
    """Answer ``{"url", "expires"}``; the URL starts with ``public_url`` when set (the proxy
    behind a TLS ingress sees neither the public scheme nor, always, the public host)."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest('expected a JSON body {"path": "/…/studies/{study}[/series/{series}]"}'
                         ) from exc
    path = body.get("path") if isinstance(body, dict) else None
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 1024:
        raise BadRequest('expected a JSON body {"path": "/…/studies/{study}[/series/{series}]"}')
    resource = match_resource(path)
    if resource is None or resource.instance or not all(map(is_valid_uid, resource.uids)):
        raise BadRequest("links are for a study or a series: …/studies/{study}[/series/{series}]")
    qido_path, qido_query = _qido_check(resource)
    try:
        found = await qido.search(upstream, qido_path, qido_query, upstream_headers(request))
    except UpstreamStatus as exc:
        if exc.status in (401, 403):  # the caller's credentials: theirs to fix
            raise
        found = []
    except (UpstreamBodyError, TooLarge):
        found = []
    if not found:
        raise UpstreamStatus(404, "no such study or series at the upstream for this caller",
                             {"Content-Type": "text/plain"}, b"no such study or series\n")
    token, expires = signer.sign(path)
    base = public_url or f"{request.scheme}://{request.host}"
    url = f"{base}{path}?accept=application/zip&{PARAM}={quote(token)}"
    return web.json_response({"url": url, "expires": expires},
                             headers={"Cache-Control": "no-store"})


def upstream_basic_auth(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()
