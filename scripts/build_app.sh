#!/usr/bin/env bash
# Builds the double-click app into dist/imgcls-desktop/ and smoke-tests a copy of it.
#
#   scripts/build_app.sh                 fresh build venv, build, smoke test
#   scripts/build_app.sh --reuse-venv    keep build/venv if it exists (faster re-builds)
#   scripts/build_app.sh --smoke-only    only smoke-test the existing dist/imgcls-desktop/
#
# The build venv (build/venv) holds only the runtime dependencies and PyInstaller: no test
# tools, no scikit-learn, no keras_hub/keras_cv/keras_nlp, so none of them can end up in
# the bundle. The smoke test runs from a copy of the bundle in a temporary folder outside
# the source tree, with its own user data folder, and fails if anything is written inside
# the copied bundle. A summary is written to build/packaging-report.json.
# Exit status: 0 when the build and every smoke step passed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-python3}
venv=build/venv
reuse_venv=0
smoke_only=0
for arg in "$@"; do
    case "$arg" in
        --reuse-venv) reuse_venv=1 ;;
        --smoke-only) smoke_only=1 ;;
        *) echo "usage: scripts/build_app.sh [--reuse-venv] [--smoke-only]" >&2; exit 2 ;;
    esac
done
report=build/packaging-report.json
mkdir -p build
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

build_seconds=null
if [ "$smoke_only" = 0 ]; then
    t0=$(now)
    if [ "$reuse_venv" = 0 ] || [ ! -x "$venv/bin/python" ]; then
        echo "== creating a clean build venv in $venv"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
        "$venv/bin/python" -m pip install -q ".[build]"
    fi
    for unwanted in pytest pytest-qt scikit-learn keras-hub keras-cv keras-nlp; do
        if "$venv/bin/python" -m pip show -q "$unwanted" >/dev/null 2>&1; then
            echo "error: $unwanted is installed in $venv; the bundle must not carry it" >&2
            exit 1
        fi
    done
    t1=$(now)
    echo "== pyinstaller --noconfirm --clean build.spec"
    "$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN build.spec
    t2=$(now)
    build_seconds=$(elapsed "$t1" "$t2")
    echo "== venv: $(elapsed "$t0" "$t1") s, pyinstaller: ${build_seconds} s"
fi

bundle=dist/imgcls-desktop
[ -x "$bundle/imgcls-desktop" ] && [ -x "$bundle/imgcls" ] \
    || { echo "error: $bundle/imgcls-desktop or $bundle/imgcls is missing" >&2; exit 1; }
size_human=$(du -sh "$bundle" | cut -f1)
size_bytes=$(du -sb "$bundle" | cut -f1)
echo "== bundle size: $size_human ($bundle, $size_bytes bytes)"

# -- smoke test, from a copy outside the source tree ----------------------------------------
scratch=$(mktemp -d /tmp/imgcls-smoke.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
cp -a "$bundle" "$scratch/"
app="$scratch/imgcls-desktop"
sample="$app/_internal/resources/sample_dataset"
[ -d "$sample/train" ] || { echo "error: no bundled sample dataset at $sample" >&2; exit 1; }
touch "$scratch/started"
cd "$scratch"   # nothing may depend on the source tree or the working directory
# A clean environment: no PYTHONPATH into the checkout, its own user data folder, no display.
smoke_env=(env -u PYTHONPATH -u PYTHONHOME -u DISPLAY -u WAYLAND_DISPLAY
           IMGCLS_DATA_DIR="$scratch/userdata" XDG_CONFIG_HOME="$scratch/config"
           HOME="$scratch/home" QT_QPA_PLATFORM=offscreen)
mkdir -p "$scratch/home"

run_step() {  # run_step NAME OUTFILE COMMAND...: times one step, echoes its output, keeps its status
    local name=$1 out=$2; shift 2
    local s e status=0
    s=$(now)
    "${smoke_env[@]}" "$@" >"$out" 2>"$out.err" || status=$?
    e=$(now)
    eval "seconds_$name=$(elapsed "$s" "$e")"
    eval "status_$name=$status"
    echo "-- $name: exit $status in $(elapsed "$s" "$e") s"
    tail -n 40 "$out"; tail -n 15 "$out.err" >&2
}

echo "== smoke: imgcls-desktop --self-test (from $app)"
run_step self_test "$scratch/self_test.out" "$app/imgcls-desktop" --self-test
echo "== smoke: imgcls-desktop --self-test with stdout and stderr closed (a windowed start)"
s=$(now); status_windowed=0
"${smoke_env[@]}" IMGCLS_DATA_DIR="$scratch/userdata-windowed" "$app/imgcls-desktop" --self-test >&- 2>&- \
    || status_windowed=$?
seconds_windowed=$(elapsed "$s" "$(now)")
echo "-- windowed self_test: exit $status_windowed in $seconds_windowed s (result in its log file)"
# The photo preset's ImageNet backbone ships inside the bundle: train it with no network at
# all (a fresh network namespace, where the system allows one), so a download cannot hide.
offline=()
if unshare -n true 2>/dev/null; then offline=(unshare -n); fi
echo "== smoke: imgcls train (bundled sample photos, recommended preset, 3 epochs, ${offline[*]:-network on})"
run_step train "$scratch/train.out" "${offline[@]}" "$app/imgcls" train "$sample" --epochs 3 --out "$scratch/x.keras" --json
echo "== smoke: imgcls predict"
run_step predict "$scratch/predict.out" "$app/imgcls" predict "$scratch/x.keras" \
    "$sample/test/glass/$(ls "$sample/test/glass" | head -n 1)" "$sample/test/paper" --json
echo "== smoke: imgcls export --format onnx (converted and checked in onnxruntime, inside the bundle)"
run_step export "$scratch/export.out" "$app/imgcls" export "$scratch/x.keras" --format onnx \
    --out "$scratch/x.onnx" --json
written=$(find "$app" -newer "$scratch/started" -print | head -n 20)

cd "$root"
"$python" - "$scratch" "$report" "$build_seconds" "$size_bytes" "$size_human" "$written" \
    "$status_self_test" "$seconds_self_test" "$status_train" "$seconds_train" \
    "$status_predict" "$seconds_predict" "$status_windowed" "$seconds_windowed" \
    "$status_export" "$seconds_export" <<'EOF'
import json, sys
(scratch, report, build_s, size_b, size_h, written,
 st_status, st_s, tr_status, tr_s, pr_status, pr_s, wi_status, wi_s, ex_status, ex_s) = sys.argv[1:]

def document(name):
    text = open(f"{scratch}/{name}.out", encoding="utf-8").read()
    try:
        return json.loads(text[text.index("{"):])
    except ValueError:
        return None

self_test, train, predict = document("self_test"), document("train"), document("predict")
exported = document("export") or {}
results = (predict or {}).get("results", [])
try:
    log_text = open(f"{scratch}/userdata-windowed/logs/imgcls.log", encoding="utf-8").read()
except OSError:
    log_text = ""
checks = {
    "self_test exits 0": st_status == "0",
    'self_test prints "ok": true': bool(self_test and self_test.get("ok") is True),
    "train exits 0": tr_status == "0",
    "train prints JSON": train is not None,
    "train used the shipped photo backbone (efficientnet_lite0)": (train or {}).get("preset") == "efficientnet_lite0",
    "predict exits 0": pr_status == "0",
    "predict labels every image": bool(results) and all(r.get("label") for r in results),
    "export to onnx exits 0 and agrees with the model": ex_status == "0"
        and (exported.get("verification") or {}).get("ok") is True,
    "windowed self_test (no stdout/stderr) exits 0": wi_status == "0",
    'windowed self_test logs "ok": true': '"ok": true' in log_text,
    "nothing written inside the bundle": not written,
}
summary = {
    "ok": all(checks.values()),
    "checks": checks,
    "build_seconds": None if build_s == "null" else float(build_s),
    "bundle_bytes": int(size_b), "bundle_size": size_h,
    "smoke_seconds": {"self_test": float(st_s), "windowed_self_test": float(wi_s),
                      "train": float(tr_s), "predict": float(pr_s), "export_onnx": float(ex_s)},
    "self_test": self_test, "predicted_images": len(results),
    "written_inside_bundle": written.splitlines(),
}
with open(report, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
print("== smoke checks")
for name, passed in checks.items():
    print(f"   {'PASS' if passed else 'FAIL'}  {name}")
print(f"== report: {report}")
sys.exit(0 if summary["ok"] else 1)
EOF
