#!/usr/bin/env bash
# The whole test suite: lint, types, the container image built and run with podman
# (scripts/container.sh), then unit and integration tests against a real Orthanc.
#   scripts/test.sh              everything (what CI runs: .ci/run)
#   scripts/test.sh PYTEST-ARGS  lint, types and only those tests (no container build)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check zipproxy tests bench
.venv/bin/mypy
[ $# -eq 0 ] && scripts/container.sh
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
