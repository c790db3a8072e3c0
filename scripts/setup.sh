#!/usr/bin/env bash
# Installs imgcls-desktop into ./.venv (created if missing) on a fresh machine.
#   scripts/setup.sh          the application
#   scripts/setup.sh test     the application and the test tools
#   scripts/setup.sh build    the application and PyInstaller
#   scripts/setup.sh gpu      the application on the CUDA build of TensorFlow (Linux, NVIDIA)
# IMGCLS_SETUP_DRY_RUN=1 prints the pip commands instead of running them.
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
pip() {
    if [ -n "${IMGCLS_SETUP_DRY_RUN:-}" ]; then echo "pip $*"; else .venv/bin/python -m pip "$@"; fi
}
[ -n "${IMGCLS_SETUP_DRY_RUN:-}" ] || [ -x .venv/bin/python ] || "$python" -m venv .venv
pip install -q --upgrade pip
case "$extra" in
    test) pip install -q -e ".[test]" ;;
    build) pip install -q -e ".[build]" ;;
    gpu)
        # tensorflow-cpu (the project's dependency) and tensorflow (the CUDA build) both
        # install the `tensorflow` module: side by side, whichever pip wrote last wins, and
        # `pip install .[gpu]` installs both. So: the project alone (--no-deps), then every
        # dependency pyproject.toml lists except tensorflow-cpu, then the gpu extra's
        # tensorflow with its CUDA libraries ([and-cuda]), and no tensorflow-cpu left over.
        reader=.venv/bin/python
        [ -x "$reader" ] || reader="$python"
        mapfile -t deps < <("$reader" - <<'PY'
import tomllib

with open("pyproject.toml", "rb") as handle:
    project = tomllib.load(handle)["project"]
for requirement in project["dependencies"]:
    if not requirement.replace(" ", "").lower().startswith("tensorflow-cpu"):
        print(requirement)
for requirement in project["optional-dependencies"]["gpu"]:
    name, _, version = requirement.partition("==")
    print(f"{name}[and-cuda]=={version}" if name.strip() == "tensorflow" else requirement)
PY
        )
        pip uninstall -q -y tensorflow-cpu || true
        pip install -q --no-deps -e .
        pip install -q "${deps[@]}"
        if [ -z "${IMGCLS_SETUP_DRY_RUN:-}" ]; then
            if .venv/bin/python -m pip show -q tensorflow-cpu 2>/dev/null; then
                echo "error: tensorflow-cpu is still installed beside tensorflow; run: .venv/bin/python -m pip uninstall tensorflow-cpu" >&2
                exit 1
            fi
            .venv/bin/python -c "import tensorflow as tf; print('GPUs seen by TensorFlow:', tf.config.list_physical_devices('GPU') or 'none (check the NVIDIA driver)')"
        fi
        ;;
    "") pip install -q -e . ;;
    *) echo "usage: scripts/setup.sh [test|build|gpu]" >&2; exit 2 ;;
esac
