#!/usr/bin/env bash
# The benchmark (bench/zipbench.py): Orthanc's own multipart vs ZIPs through zipproxy, measured
# side by side in one run. Extra arguments go to the script (--quick, --big, --rounds N, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m bench.zipbench "$@"
