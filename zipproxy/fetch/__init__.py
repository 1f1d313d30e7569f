"""``zipproxy fetch``: a cohort to disk, one verified DICOM ZIP per study, in parallel, resumable.

Modules: :mod:`.options` (command line), :mod:`.search` (QIDO-RS paging), :mod:`.client` (HTTP),
:mod:`.verify` (a ZIP before its rename), :mod:`.layout` (``--extract`` paths), :mod:`.store`
(DIR, resume records, cohort.csv), :mod:`.report` (bar, lines, failure table), :mod:`.run`
(the steps). rich comes with the ``fetch`` extra: ``pip install 'zipproxy[fetch]'``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

EXTRA_MISSING = ("zipproxy fetch needs the fetch extra (rich, for its progress output): "
                 "pip install 'zipproxy[fetch]'")


def main(argv: Sequence[str]) -> int:
    """Run ``zipproxy fetch`` (steps in :mod:`.run`); returns the exit status."""
    try:
        from .report import Redactor, choose
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "rich":
            raise
        print(EXTRA_MISSING, file=sys.stderr)
        return 2
    from .errors import FetchError, UsageError
    from .options import parse
    from .run import Run
    from .store import Store

    try:
        opts = parse(argv)
        store = Store(opts.out, opts.layout)
        store.open()  # 1.
    except UsageError as exc:
        print(f"zipproxy fetch: {exc.reason}", file=sys.stderr)
        return 2
    report = choose(opts.quiet, Redactor(opts.secrets))
    run = Run(opts, store, report)
    try:
        asyncio.run(run.main())  # 2.-4.
    except FetchError as exc:
        print(report.redact(f"zipproxy fetch: {exc.reason}"), file=sys.stderr)
        return 1
    finally:
        records = run.records()
        cohort = str(store.write_cohort(records)) if records else None  # 5.
        store.close()
    report.summary(cohort, run.interrupted)
    return run.exit_status  # 6.
