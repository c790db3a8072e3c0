#!/usr/bin/env bash
# Installs imgcls-desktop into ./.venv (created if missing) on a fresh machine.
#   scripts/setup.sh          the application
#   scripts/setup.sh test     the application and the test tools
#   scripts/setup.sh build    the application and PyInstaller
# Qt needs a few system libraries for a real window; they are installed with apt-get
# when it is available and we are root (a desktop user normally has them already).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

qt_libs="libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 \
libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libglib2.0-0"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    missing=$(for p in $qt_libs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    if [ -n "$missing" ]; then
        echo "Installing Qt system libraries: $missing"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
            || echo "warning: could not install Qt system libraries; offscreen use still works" >&2
    fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
case "$extra" in
    test) .venv/bin/python -m pip install -q -e ".[test]" ;;
    build) .venv/bin/python -m pip install -q -e ".[build]" ;;
    "") .venv/bin/python -m pip install -q -e . ;;
    *) echo "usage: scripts/setup.sh [test|build]" >&2; exit 2 ;;
esac
