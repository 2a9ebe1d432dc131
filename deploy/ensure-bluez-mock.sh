#!/usr/bin/env bash
# The bleak/BlueZ tests (tests/edge/test_bleak_bluez.py) run bleak's real BlueZ backend
# against python-dbusmock's bluez5 template on a private D-Bus system bus. That needs
# Debian's dbus-daemon, and dbus-python (a dependency of python-dbusmock, sdist only on
# PyPI) needs a C toolchain, pkg-config and the libdbus/GLib headers to build. Install
# what is missing when we are root with apt; otherwise say exactly what to install.
# Usage: ensure-bluez-mock.sh [PYTHON]   (PYTHON: the interpreter dbus-python is built for)
set -euo pipefail

PY="${1:-python3}"
missing=()

have_pkgconfig() { command -v pkg-config >/dev/null && pkg-config --exists "$1" 2>/dev/null; }

command -v dbus-daemon >/dev/null || missing+=(dbus)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v cc >/dev/null && command -v make >/dev/null || missing+=(build-essential)
have_pkgconfig dbus-1 || missing+=(libdbus-1-dev)
have_pkgconfig glib-2.0 || missing+=(libglib2.0-dev)
# Python.h for the interpreter dbus-python is built against (pyenv/uv Pythons ship it).
if command -v "$PY" >/dev/null; then
  inc="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)"
  [[ -n "$inc" && -f "$inc/Python.h" ]] || missing+=(python3-dev)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "bluez-mock: dbus-daemon $(dbus-daemon --version | head -1 | awk '{print $NF}'), libdbus $(pkg-config --modversion dbus-1), GLib $(pkg-config --modversion glib-2.0) present"
  exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "bluez-mock: installing ${missing[*]} (once) for the bleak/BlueZ tests"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "bluez-mock: dbus-daemon $(dbus-daemon --version | head -1 | awk '{print $NF}'), libdbus $(pkg-config --modversion dbus-1), GLib $(pkg-config --modversion glib-2.0) present"
  exit 0
fi
echo "bluez-mock: missing ${missing[*]}. Install them: sudo apt-get install ${missing[*]}" >&2
exit 1
