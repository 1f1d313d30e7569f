#!/usr/bin/env bash
# The benchmarks, measured against a real Orthanc in the same run (bench/README.md):
#   scripts/bench.sh [--quick|--big|--rounds N|--only A,T20K|--baseline REV|...]
#       bench/zipbench.py: per study, Orthanc's multipart direct, relayed by nginx and by
#       zipproxy's pass-through, against the ZIPs (of the current tree and of REV)
#   scripts/bench.sh collection [--rounds N|...]
#       bench/collectionbench.py: one collection ZIP vs the same studies one by one
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --bench  # installs only what is missing (nginx-light, 7zip, the venv)
export ZIPBENCH_COMMAND=scripts/bench.sh  # the report prints it with the arguments
if [[ "${1:-}" == "collection" ]]; then
    shift
    exec .venv/bin/python -m bench.collectionbench "$@"
fi
exec .venv/bin/python -m bench.zipbench "$@"
