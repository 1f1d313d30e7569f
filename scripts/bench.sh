#!/usr/bin/env bash
# The benchmarks, measured against a real Orthanc in the same run:
#   scripts/bench.sh [--quick|--big|--rounds N|...]   bench/zipbench.py: Orthanc's own multipart
#                                                     vs ZIPs through zipproxy, per study
#   scripts/bench.sh collection [--rounds N|...]      bench/collectionbench.py: one collection ZIP
#                                                     vs the same studies one by one
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [[ "${1:-}" == "collection" ]]; then
    shift
    exec .venv/bin/python -m bench.collectionbench "$@"
fi
exec .venv/bin/python -m bench.zipbench "$@"
