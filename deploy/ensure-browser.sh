#!/usr/bin/env bash
# The console's browser tests drive Debian's Chromium through Playwright (never a browser
# Playwright downloads). Install it when missing and we are root with apt; otherwise say how.
set -euo pipefail

CHROMIUM="${PROXIMA_CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$CHROMIUM" ]]; then
  echo "browser: $("$CHROMIUM" --version 2>/dev/null || echo chromium) at $CHROMIUM"
  exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "browser: installing Debian's chromium for the console tests (once)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  echo "browser: $("$CHROMIUM" --version 2>/dev/null) at $CHROMIUM"
  exit 0
fi
echo "browser: $CHROMIUM is missing. Install it: sudo apt-get install chromium" >&2
exit 1
