"""``zipproxy``: run the proxy in the foreground; ``zipproxy fetch …`` downloads a cohort
(:mod:`zipproxy.fetch`).

``--workers N`` starts N processes that listen on the same port (SO_REUSEPORT: the kernel spreads
connections), so one pod uses several cores; the parent only supervises and forwards SIGTERM.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from aiohttp import web

from .app import create_app
from .config import ConfigError, Settings, load
from .logs import setup_logging

log = logging.getLogger("zipproxy")


def run_worker(settings: Settings) -> None:
    """One event loop serving the app until SIGTERM/SIGINT, then a graceful shutdown:
    stop accepting, let in-flight ZIPs finish within ``shutdown_grace``, abort the rest."""
    setup_logging(settings.log_format, settings.log_level)
    log.info("zipproxy listening on http://%s:%d for %s", settings.host, settings.port,
             settings.upstream)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,  # one structured line per request comes from our middleware
        # Our own drain (lifecycle.Lifecycle) cancels what is left after the grace; aiohttp's
        # timeout is only the backstop.
        shutdown_timeout=settings.shutdown_grace + 2,
        reuse_port=settings.workers > 1,
        print=None,
        handle_signals=True,
        # A client that leaves before the upstream answered cancels the handler, which closes
        # the upstream request at once instead of holding it (and a stream slot) until timeout.
        handler_cancellation=True,
    )


def serve(settings: Settings) -> int:
    if settings.workers == 1:
        run_worker(settings)
        return 0
    setup_logging(settings.log_format, settings.log_level)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=run_worker, args=(settings,), name=f"zipproxy-worker-{i}")
               for i in range(settings.workers)]
    for proc in workers:
        proc.start()

    def forward(signum: int, frame: FrameType | None) -> None:
        for proc in workers:
            if proc.pid is not None and proc.is_alive():
                proc.terminate()  # SIGTERM: each worker shuts down gracefully

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in workers:
        proc.join()
    failed = [p.exitcode for p in workers if p.exitcode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["fetch"]:
        from .fetch import main as fetch_main  # its optional extra is checked there

        return fetch_main(args[1:])
    try:
        settings = load(args)
    except ConfigError as exc:
        print(f"zipproxy: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
