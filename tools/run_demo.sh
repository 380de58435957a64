#!/usr/bin/env bash
# Set up a virtual environment with the package, then run the demonstration:
# a sender and a receiver exchanging a SPEAD stream over UDP loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q .
exec .venv/bin/python -m spead2.demo "$@"
