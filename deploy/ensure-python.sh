#!/usr/bin/env bash
# Create the virtual environment; on Debian/Ubuntu install python3-venv first if missing.
set -euo pipefail
PY="$1"; VENV="$2"
if ! command -v "$PY" >/dev/null; then
  echo "setup: $PY not found. Install Python 3.11 or newer (Debian/Ubuntu: sudo apt-get install python3 python3-venv)" >&2
  exit 1
fi
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "setup: Proxima needs Python >= 3.11; $PY is $("$PY" -V 2>&1)" >&2; exit 1; }
if [[ -x "$VENV/bin/python" ]]; then exit 0; fi
if ! "$PY" -m venv "$VENV" 2>/dev/null; then
  rm -rf "$VENV"
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv "$VENV"
  else
    echo "setup: '$PY -m venv' failed. Install the venv module (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2
    exit 1
  fi
fi
