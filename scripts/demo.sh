#!/usr/bin/env bash
# The main job: Orthanc (loopback, own config and storage) + generated sample studies + zipproxy,
# then print a curl line and a browser link that download a DICOM ZIP. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m zipproxy.demo "$@"
