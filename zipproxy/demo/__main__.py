"""The main job: ``python -m zipproxy.demo`` (or ``scripts/demo.sh``).

Starts a real Orthanc on loopback with its own config and storage folder (no systemd), loads the
generated sample studies through STOW-RS, starts zipproxy in front of it, and prints a curl line
and a browser link that download a DICOM ZIP. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .orthanc import free_port, start_with_samples


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"zipproxy exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("zipproxy did not start in time")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m zipproxy.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("demo-data"))
    parser.add_argument("--port", type=int, default=8080, help="zipproxy port (0 = any free)")
    parser.add_argument("--exit", action="store_true", help="print the links, then stop")
    args = parser.parse_args()
    port = args.port or free_port()

    with start_with_samples(args.workdir.resolve(), use_stow=True) as upstream:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "zipproxy", "--upstream", upstream.url,
             "--host", "127.0.0.1", "--port", str(port), "--log-format", "text"],
        )
        try:
            base = f"http://127.0.0.1:{port}"
            # Orthanc's REST API passes through: /system answers once both are up.
            _wait_ready(base + "/system", proc=proxy)
            study = upstream.studies[0]
            series = study.series_uids[0]
            link = f"{base}/dicom-web/studies/{study.study_uid}?accept=application/zip"
            print(f"""
Orthanc (upstream):  {upstream.url}   ({len(upstream.studies)} sample studies loaded)
zipproxy:            {base}

Download a study as a DICOM ZIP with curl:
  curl -fOJ -H 'Accept: application/zip' {base}/dicom-web/studies/{study.study_uid}

A series, as stored (no transcoding):
  curl -fOJ -H 'Accept: application/zip; transfer-syntax=*' \\
    {base}/dicom-web/studies/{study.study_uid}/series/{series}

Or open this link in a browser:
  {link}

Everything else passes through, e.g. QIDO:  curl {base}/dicom-web/studies
Press Ctrl-C to stop.""", flush=True)
            if not args.exit:
                try:
                    while proxy.poll() is None:
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    pass
        finally:
            proxy.send_signal(signal.SIGTERM)
            try:
                proxy.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.kill(proxy.pid, signal.SIGKILL)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
