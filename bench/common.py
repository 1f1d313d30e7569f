"""What every bench module shares: media types, units, the repository root and the log line."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Final

# The anchors ask for the multipart as stored (no transcoding), as the ZIPs do.
ACCEPT_MULTIPART: Final = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_ZIP: Final = "application/zip; transfer-syntax=*"
AES_PASSWORD: Final = "zipbench-password"
ACCEPT_AES: Final = f'{ACCEPT_ZIP}; password="{AES_PASSWORD}"'

KiB: Final = 1 << 10
MiB: Final = 1 << 20
GiB: Final = 1 << 30

REPO: Final = Path(__file__).resolve().parent.parent


def exit_on_sigterm() -> None:
    """SIGTERM (kill, a CI timeout) ends the run like Ctrl-C: through the ``finally`` blocks
    that stop the Orthanc, nginx and proxies the bench started, instead of orphaning them."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def log(msg: str) -> None:
    """A timestamped progress line on stderr (the report goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
