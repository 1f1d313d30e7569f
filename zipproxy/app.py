"""The aiohttp application: state in ``web.AppKey``s, one ClientSession, one error middleware.

Paths under ``/-/`` belong to the proxy (health, readiness, metrics) and never reach the
upstream; every other path is the upstream's.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import web

from . import links
from .assembler import ZipAssembler
from .collection import Limits, plan_search
from .config import Settings
from .errors import (
    BadRequest,
    ClientStalled,
    Forbidden,
    StreamError,
    TooManyStreams,
    UpstreamError,
    UpstreamStatus,
    ZipProxyError,
)
from .forwarding import public_base, upstream_headers
from .keys import (
    ASSEMBLER,
    IS_ZIP,
    LIFECYCLE,
    METRICS,
    PUBLIC_URL,
    RESPONSE,
    SENT,
    SETTINGS,
    SIGNER,
    SIZER,
    STALLED,
    STREAMS,
    UPSTREAM,
)
from .lifecycle import Lifecycle, StreamSlots
from .metrics import CONTENT_TYPE, Metrics
from .passthrough import forward
from .rendered import rendered_request, stream_rendered
from .retrieve import single_plan, stream_zip
from .routes import ZipRoute, zip_password, zip_route
from .sizes import Sizer
from .upstream import Upstream, make_session
from .zipresponse import abort

log = logging.getLogger("zipproxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
READY_TIMEOUT: Final = 2.0


def error_response(exc: ZipProxyError) -> web.Response:
    if isinstance(exc, UpstreamStatus):
        return web.Response(status=exc.status, body=exc.body, headers=exc.headers)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyStreams) else {}
    return web.Response(status=exc.status, text=exc.reason + "\n", headers=headers)


@dataclass
class _Line:
    """What the request's log line will say."""

    request_id: str
    started: float = field(default_factory=time.monotonic)
    outcome: str = "ok"
    status: int = 500
    error: str | None = None


@web.middleware
async def errors_and_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors become HTTP answers here; every request gets one log line and metrics.

    A failure once the answer has started can only cut the connection: a zipproxy error
    (:mod:`zipproxy.errors`) is logged with its name, anything else -- a bug -- as
    ``internal``, with its traceback; neither is ever an ``ok``."""
    line = _Line(request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16])
    lifecycle = request.app[LIFECYCLE]
    task = asyncio.current_task()
    if task is not None:
        lifecycle.tasks.add(task)
    try:
        response = await handler(request)
        line.status = response.status
        if request.get(IS_ZIP) and response.prepared:
            line.outcome = "zip-complete"
            request.app[METRICS].zip_completed.inc()
            request.app[METRICS].zip_duration.observe(time.monotonic() - line.started)
        return response
    except ZipProxyError as exc:
        return _domain_error(request, exc, line)
    except (ConnectionResetError, asyncio.CancelledError) as exc:
        return _client_gone(request, exc, line)
    except Exception as exc:  # a bug: never let it pass for a complete answer
        return _internal_error(request, exc, line)
    finally:
        if task is not None:
            lifecycle.tasks.discard(task)
        _log_request(request, line)


def _domain_error(request: web.Request, exc: ZipProxyError, line: _Line) -> web.StreamResponse:
    metrics = request.app[METRICS]
    line.error = type(exc).__name__
    if isinstance(exc, UpstreamError | StreamError) and not isinstance(
            exc, UpstreamStatus | ClientStalled):
        metrics.upstream_errors.labels(line.error).inc()
    prepared: web.StreamResponse | None = request.get(RESPONSE)
    if prepared is not None and prepared.prepared:
        # The answer has started: it can only be cut, never completed falsely.
        line.outcome, line.status = "aborted", prepared.status
        if request.get(IS_ZIP):
            metrics.zip_aborted.labels(line.error).inc()
        log.warning("aborting the response: %s", exc.reason,
                    extra={"request_id": line.request_id, "error": line.error})
        abort(request)
        return prepared
    line.status = exc.status
    line.outcome = "upstream-status" if isinstance(exc, UpstreamStatus) else "refused"
    if request.get(IS_ZIP):
        metrics.zip_refused.labels(str(line.status)).inc()
    return error_response(exc)


def _client_gone(request: web.Request, exc: BaseException, line: _Line) -> web.StreamResponse:
    """The client went away (aiohttp cancels the handler, or a write fails), or the grace
    period after SIGTERM ran out: the upstream request is closed by the handler's
    ``finally``; nothing is left to answer."""
    line.outcome, line.error = "client-gone", "ClientDisconnected"
    if request.get(STALLED):  # cut by its BodyWriter: it accepted nothing for --read-timeout
        line.outcome, line.error = "aborted", "ClientStalled"
    elif request.app[LIFECYCLE].draining and isinstance(exc, asyncio.CancelledError):
        line.outcome, line.error = "shutdown-aborted", "Shutdown"
    prepared: web.StreamResponse | None = request.get(RESPONSE)
    line.status = prepared.status if prepared is not None else 499
    if request.get(IS_ZIP):
        request.app[METRICS].zip_aborted.labels(line.error).inc()
    if isinstance(exc, asyncio.CancelledError):
        raise exc
    abort(request)
    return prepared if prepared is not None else web.Response()


def _internal_error(request: web.Request, exc: Exception, line: _Line) -> web.StreamResponse:
    metrics = request.app[METRICS]
    line.error = "internal"
    log.error("internal error: %s", type(exc).__name__, exc_info=exc,
              extra={"request_id": line.request_id, "error": line.error})
    prepared: web.StreamResponse | None = request.get(RESPONSE)
    if prepared is not None and prepared.prepared:
        line.outcome, line.status = "aborted", prepared.status
        if request.get(IS_ZIP):
            metrics.zip_aborted.labels(line.error).inc()
        abort(request)
        return prepared
    line.outcome, line.status = "refused", 500
    if request.get(IS_ZIP):
        metrics.zip_refused.labels("500").inc()
    return web.Response(status=500, text="internal error in zipproxy (logged)\n")


def _log_request(request: web.Request, line: _Line) -> None:
    metrics = request.app[METRICS]
    sent = request.get(RESPONSE)
    sent_bytes = sent.get(SENT, 0) if sent is not None else 0
    assembler = request.get(ASSEMBLER)
    instances = assembler.instances if assembler is not None else None
    if request.get(IS_ZIP):
        metrics.zip_bytes.inc(sent_bytes)
        metrics.zip_instances.inc(instances or 0)
    if assembler is not None:
        _log_content_notes(assembler, line.request_id)
    # Probes and scrapes every few seconds would drown the log: they go at debug level.
    status = line.status
    level = logging.DEBUG if request.path.startswith("/-/") and status < 400 else logging.INFO
    log.log(
        level, "%s %s %s", request.method, request.path, status,
        extra={"request_id": line.request_id, "method": request.method, "path": request.path,
               "status": status, "outcome": line.outcome, "error": line.error,
               "bytes": sent_bytes, "instances": instances,
               "duration_ms": round((time.monotonic() - line.started) * 1000, 1)},
    )


def _log_content_notes(assembler: ZipAssembler, request_id: str) -> None:
    """What the DICOMDIR had to decide about the instances (UIDs and key names only)."""
    if assembler.conflicts:
        log.warning("instances of one entity disagree on DICOMDIR keys; the first value was "
                    "kept: %s", "; ".join(assembler.conflicts[:20]),
                    extra={"request_id": request_id})
    if assembler.unreadable:
        log.warning("%d instance(s) with a data set that could not be read to its end, "
                    "streamed as stored: %s", assembler.unreadable, assembler.first_problem,
                    extra={"request_id": request_id})


async def handle(request: web.Request) -> web.StreamResponse:
    """A ZIP when the path is a study, series or instance, a study or series search, or the
    renderings of a study or series, and negotiation picks application/zip
    (:func:`~zipproxy.routes.zip_route`); everything else passes through."""
    settings = request.app[SETTINGS]
    route = zip_route(request, settings)
    if route is not None and route.rendered is None:
        return await _dicom_zip(request, route)
    if links.PARAM in request.rel_url.query:
        raise BadRequest("a signed link (zp-link) only opens a study or series as a ZIP")
    if route is not None:  # …/studies/{uid}[/series/{uid}]/rendered
        rendered = rendered_request(request, route, settings)
        request[IS_ZIP] = True
        with request.app[STREAMS]:
            return await stream_rendered(request, rendered, request.app[UPSTREAM], settings,
                                         on_start=request.app[METRICS].zip_started.inc)
    request.app[METRICS].passthrough.labels(request.method).inc()
    return await forward(request, request.app[UPSTREAM], settings.read_timeout)


async def _dicom_zip(request: web.Request, route: ZipRoute) -> web.StreamResponse:
    """A retrieve or a collection, as one DICOM ZIP."""
    settings, upstream = request.app[SETTINGS], request.app[UPSTREAM]
    request[IS_ZIP] = True
    authorization = _link_authorization(request, request.rel_url.raw_path)
    password = zip_password(request, route.zipreq, settings)
    with request.app[STREAMS]:
        if route.resource is not None:
            plan = single_plan(request, route.resource, route.zipreq, public_base(request),
                               encrypted=password is not None)
        else:
            assert route.search is not None
            limits = Limits(settings.max_collection, settings.max_collection_instances,
                            settings.max_collection_bytes)
            plan = await plan_search(request, route.search, upstream,
                                     upstream_headers(request, authorization), limits,
                                     request.app[SIZER], password is not None)
        return await stream_zip(request, plan, route.zipreq, upstream, settings,
                                on_start=request.app[METRICS].zip_started.inc,
                                authorization=authorization, password=password)


def _link_authorization(request: web.Request, raw_path: str) -> str | None:
    """For a request with a valid ``zp-link``: the Authorization to send upstream."""
    token = request.rel_url.query.get(links.PARAM)
    if token is None:
        return None
    signer = request.app.get(SIGNER)
    if signer is None:
        raise Forbidden("signed download links are not enabled on this proxy")
    signer.verify(raw_path, token)
    auth = request.app[SETTINGS].upstream_auth
    return links.upstream_basic_auth(auth) if auth else ""


async def create_link(request: web.Request) -> web.Response:
    signer = request.app.get(SIGNER)
    if signer is None:
        raise Forbidden("signed download links are not enabled (set --link-secret)")
    return await links.create_link(request, request.app[UPSTREAM], signer,
                                   request.app[SETTINGS].public_url)


async def healthy(request: web.Request) -> web.Response:
    """Liveness: the process and its event loop answer."""
    return web.Response(text="ok\n")


async def ready(request: web.Request) -> web.Response:
    """Readiness: the upstream answers HTTP (any status) within READY_TIMEOUT seconds."""
    upstream = request.app[UPSTREAM]
    try:
        async with upstream.session.get(
            upstream.url("/"), timeout=aiohttp.ClientTimeout(total=READY_TIMEOUT),
            allow_redirects=False,
        ) as resp:
            return web.Response(text=f"ok: upstream answered {resp.status}\n")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return web.Response(status=503, text=f"upstream not reachable ({type(exc).__name__})\n")


async def metrics_view(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[errors_and_log], client_max_size=0)
    app[SETTINGS] = settings
    app[PUBLIC_URL] = settings.public_url
    app[STREAMS] = slots = StreamSlots(settings.max_streams)
    app[METRICS] = metrics = Metrics()
    metrics.in_flight.set_function(lambda: slots.active)

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        session = make_session(settings.connect_timeout, settings.read_timeout)
        app[UPSTREAM] = upstream = Upstream(session, settings.upstream)
        app[SIZER] = Sizer(upstream, settings.collection_sizes)
        yield
        if lifecycle.timer is not None:
            lifecycle.timer.cancel()
        await session.close()

    app[LIFECYCLE] = lifecycle = Lifecycle()

    async def watch_loop(app: web.Application) -> None:
        metrics.watch_loop(asyncio.get_running_loop())

    app.on_startup.append(watch_loop)

    async def start_draining(app: web.Application) -> None:
        """SIGTERM: listening has stopped; in-flight requests get ``shutdown_grace`` seconds."""
        lifecycle.timer = asyncio.create_task(lifecycle.drain(settings.shutdown_grace))

    app.on_shutdown.append(start_draining)
    app.cleanup_ctx.append(upstream_session)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/-/metrics", metrics_view)
    app.router.add_post("/-/links", create_link)
    if settings.link_secret:
        app[SIGNER] = links.LinkSigner(settings.link_secret, settings.link_ttl)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
