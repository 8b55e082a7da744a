#!/usr/bin/env bash
# Runs the test suite: sets up .venv with the test requirements, installs Debian's chromium for the
# browser tests when it is missing (needs root or sudo), then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup_env.sh requirements-dev.txt
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    (sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null
  else
    echo "note: chromium is not installed and cannot be installed without root; browser tests will be skipped." >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
