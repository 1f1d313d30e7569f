"""The typed keys of app, request and response state (``web.AppKey``, ``RequestKey``,
``ResponseKey``): one home, so that any module can read what another one stored.

The value types are imported for the type checker only: this module imports nothing of
zipproxy's at run time, so every module can import it without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

if TYPE_CHECKING:
    from .assembler import ZipAssembler
    from .config import Settings
    from .lifecycle import Lifecycle, StreamSlots
    from .links import LinkSigner
    from .metrics import Metrics
    from .sizes import Sizer
    from .upstream import Upstream

# ---- the application: made in app.create_app, the upstream session in its cleanup_ctx ----
SETTINGS: Final[web.AppKey[Settings]] = web.AppKey("settings")
UPSTREAM: Final[web.AppKey[Upstream]] = web.AppKey("upstream")
SIZER: Final[web.AppKey[Sizer]] = web.AppKey("sizer")
STREAMS: Final[web.AppKey[StreamSlots]] = web.AppKey("streams")
METRICS: Final[web.AppKey[Metrics]] = web.AppKey("metrics")
LIFECYCLE: Final[web.AppKey[Lifecycle]] = web.AppKey("lifecycle")
# Present only with --link-secret.
SIGNER: Final[web.AppKey[LinkSigner]] = web.AppKey("signer")
# --public-url ("" = none).
PUBLIC_URL: Final[web.AppKey[str]] = web.AppKey("public_url")

# ---- one request ----
# Set when the request is answered with a ZIP (retrieve, collection or rendered): its metrics.
IS_ZIP: Final[web.RequestKey[bool]] = web.RequestKey("is_zip")
# The prepared response (ZIP or pass-through).
RESPONSE: Final[web.RequestKey[web.StreamResponse]] = web.RequestKey("response")
# The ZIP's assembler: its counts and content notes go in the request's log line.
ASSEMBLER: Final[web.RequestKey[ZipAssembler]] = web.RequestKey("assembler")
# Set when a client was cut for accepting nothing for --read-timeout (zipresponse.BodyWriter).
STALLED: Final[web.RequestKey[bool]] = web.RequestKey("stalled")

# ---- one response ----
# The body bytes handed to the connection.
SENT: Final[web.ResponseKey[int]] = web.ResponseKey("sent")
