#!/usr/bin/env bash
# The whole test suite: lint, types, unit and integration tests against a real Orthanc.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check zipproxy tests bench
.venv/bin/mypy
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
