#!/usr/bin/env bash
# Builds the double-click app into dist/imgcls-desktop/, packs the archive a user downloads
# (dist/imgcls-desktop-VERSION-linux-x86_64.tar.gz) and smoke-tests what that archive unpacks to.
#
#   scripts/build_app.sh                 fresh build venv, build, archive, smoke test
#   scripts/build_app.sh --reuse-venv    keep build/venv if it exists (faster re-builds)
#   scripts/build_app.sh --smoke-only    re-pack the archive if the bundle is newer, smoke-test it
#   IMGCLS_ARCHIVE=xz scripts/build_app.sh   a .tar.xz instead of the .tar.gz (smaller, packs far slower)
#
# The build venv (build/venv) holds only the runtime dependencies and PyInstaller: no test
# tools, no scikit-learn, no keras_hub/keras_cv/keras_nlp, so none of them can end up in
# the bundle. build.spec leaves out what no feature uses (scripts/bundle_filter.py says what
# and how that was found). The smoke test unpacks the release archive into a temporary
# folder outside the source tree and runs every feature from there: the window's self-test
# (which trains and predicts through the separate engine process), the same with stdout and
# stderr closed, training both kinds of preset with no network, predict, evaluate and the
# three exports, each checked in its own runtime. It uses its own user data folder and fails
# if anything is written inside the unpacked bundle. A summary is written to
# build/packaging-report.json.
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
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

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
    "$venv/bin/python" scripts/bundle_filter.py   # the filter rules' own checks, before a long build
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

# -- the release archive ----------------------------------------------------------------------
# One top folder named after the version; owners and member order fixed. gzip -6 by default:
# it meets the 500 MB goal and packs in a minute or two. xz -6 (IMGCLS_ARCHIVE=xz, on all
# cores, still a plain .tar.xz that `tar xf` unpacks) made 274 MB of what gzip packs to 383 MB,
# in 193 s instead of 45 s on 2 quiet cores (benchmarks/results/release-size-2026-12-02.md).
version=$("$python" -c '
import ast, pathlib
tree = ast.parse(pathlib.Path("imgcls_desktop/__init__.py").read_text(encoding="utf-8"))
print(next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
           and any(getattr(target, "id", None) == "__version__" for target in node.targets)))')
platform="$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m)"
top="imgcls-desktop-$version"
case "${IMGCLS_ARCHIVE:-gz}" in
    xz) archive="dist/$top-$platform.tar.xz"; compress=(xz -6 -T0) ;;
    gz) archive="dist/$top-$platform.tar.gz"; compress=(gzip -6) ;;
    *) echo "error: IMGCLS_ARCHIVE must be xz or gz" >&2; exit 2 ;;
esac
archive_seconds=null
if [ "$smoke_only" = 0 ] || [ ! -f "$archive" ] || [ "$bundle/imgcls-desktop" -nt "$archive" ]; then
    echo "== packing $archive (${compress[*]})"
    s=$(now)
    stage=build/release
    rm -rf "$stage" "$archive" "$archive.sha256" && mkdir -p "$stage"
    # Hard links name the top folder without a second gigabyte on disk.
    cp -al "$bundle" "$stage/$top" 2>/dev/null || cp -a "$bundle" "$stage/$top"
    tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$top" \
        | "${compress[@]}" > "$archive.part"
    mv "$archive.part" "$archive"
    rm -rf "$stage"
    (cd dist && sha256sum "$(basename "$archive")" > "$(basename "$archive").sha256")
    archive_seconds=$(elapsed "$s" "$(now)")
    echo "-- packed in $archive_seconds s"
fi
archive_bytes=$(stat -c %s "$archive")

# -- smoke test, from the unpacked archive outside the source tree ---------------------------
scratch=$(mktemp -d /tmp/imgcls-smoke.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
tar -C "$scratch" -xf "$archive"
app="$scratch/$top"
[ -x "$app/imgcls-desktop" ] && [ -x "$app/imgcls" ] \
    || { echo "error: $archive does not unpack to $top/imgcls-desktop and $top/imgcls" >&2; exit 1; }
unpacked_bytes=$(du -sb "$app" | cut -f1)
unpacked_human=$(du -sh "$app" | cut -f1)
echo "== archive: $archive, $(mb "$archive_bytes") ($archive_bytes bytes);" \
     "unpacked: $(mb "$unpacked_bytes") ($unpacked_bytes bytes, $unpacked_human on disk)"
sample="$app/_internal/resources/sample_dataset"
[ -d "$sample/train" ] || { echo "error: no bundled sample dataset at $sample" >&2; exit 1; }
touch "$scratch/started"
cd "$scratch"   # nothing may depend on the source tree or the working directory
# A clean environment: no PYTHONPATH into the checkout, its own user data folder, no display.
smoke_env=(env -u PYTHONPATH -u PYTHONHOME -u DISPLAY -u WAYLAND_DISPLAY
           IMGCLS_DATA_DIR="$scratch/userdata" XDG_CONFIG_HOME="$scratch/config"
           HOME="$scratch/home" QT_QPA_PLATFORM=offscreen)
mkdir -p "$scratch/home"

steps=()
run_step() {  # run_step NAME OUTFILE COMMAND...: times one step, echoes its output, keeps its status
    local name=$1 out=$2; shift 2
    local s e status=0
    s=$(now)
    "${smoke_env[@]}" "$@" >"$out" 2>"$out.err" || status=$?
    e=$(now)
    steps+=("$name=$status:$(elapsed "$s" "$e")")
    echo "-- $name: exit $status in $(elapsed "$s" "$e") s"
    tail -n 40 "$out"; tail -n 15 "$out.err" >&2
}

echo "== smoke: imgcls-desktop --self-test (from $app)"
# The window trains and predicts through its engine process, which the frozen app starts as
# `imgcls-desktop --engine`: a watcher notes any such process while the self-test runs.
# (set +e: the subshell would otherwise end at the first look that finds none.)
( set +e +o pipefail
  while :; do ps -eo args= | grep -F -- "$app/imgcls-desktop --engine" | grep -v -F grep; sleep 0.5; done ) \
    > "$scratch/engine_seen" 2>/dev/null &
watcher=$!
run_step self_test "$scratch/self_test.out" "$app/imgcls-desktop" --self-test
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
engine_in_app=0
[ -d "$root/imgcls_desktop/engine" ] && engine_in_app=1
echo "== smoke: imgcls-desktop --self-test with stdout and stderr closed (a windowed start)"
s=$(now); status_windowed=0
"${smoke_env[@]}" IMGCLS_DATA_DIR="$scratch/userdata-windowed" "$app/imgcls-desktop" --self-test >&- 2>&- \
    || status_windowed=$?
steps+=("windowed=$status_windowed:$(elapsed "$s" "$(now)")")
echo "-- windowed self_test: exit $status_windowed in $(elapsed "$s" "$(now)") s (result in its log file)"
# The photo preset's ImageNet backbone ships inside the bundle: train it with no network at
# all (a fresh network namespace, where the system allows one), so a download cannot hide.
offline=()
if unshare -n true 2>/dev/null; then offline=(unshare -n); fi
echo "== smoke: imgcls train (bundled sample photos, recommended preset, 3 epochs, ${offline[*]:-network on})"
run_step train "$scratch/train.out" "${offline[@]}" "$app/imgcls" train "$sample" --epochs 3 --out "$scratch/x.keras" --json
echo "== smoke: imgcls train --preset fast_cnn (from scratch, test-time augmentation; 1 epoch, ${offline[*]:-network on})"
run_step train_fast "$scratch/train_fast.out" "${offline[@]}" "$app/imgcls" train "$sample" --preset fast_cnn \
    --epochs 1 --out "$scratch/f.keras" --json
echo "== smoke: imgcls predict (loads the saved .keras)"
run_step predict "$scratch/predict.out" "$app/imgcls" predict "$scratch/x.keras" \
    "$sample/test/glass/$(ls "$sample/test/glass" | head -n 1)" "$sample/test/paper" --json
echo "== smoke: imgcls evaluate (the fast_cnn model on the sample's test split)"
run_step evaluate "$scratch/evaluate.out" "$app/imgcls" evaluate "$scratch/f.keras" "$sample" --json
# Each export is loaded in its own runtime inside the bundle and compared with the .keras model.
echo "== smoke: imgcls export --format onnx (Lite0 and fast_cnn: tf2onnx, checked in onnxruntime)"
run_step export "$scratch/export.out" "$app/imgcls" export "$scratch/x.keras" --format onnx \
    --out "$scratch/x.onnx" --json
run_step export_onnx_fast "$scratch/export_onnx_fast.out" "$app/imgcls" export "$scratch/f.keras" --format onnx \
    --out "$scratch/f.onnx" --json
echo "== smoke: imgcls export --format tflite (converted and checked in the TFLite interpreter)"
run_step export_tflite "$scratch/export_tflite.out" "$app/imgcls" export "$scratch/x.keras" --format tflite \
    --out "$scratch/x.tflite" --json
echo "== smoke: imgcls export --format saved_model (checked in TensorFlow)"
run_step export_saved "$scratch/export_saved.out" "$app/imgcls" export "$scratch/f.keras" --format saved_model \
    --out "$scratch/f_saved_model" --json
written=$(find "$app" -newer "$scratch/started" -print | head -n 20)

cd "$root"
"$python" - "$scratch" "$report" "$build_seconds" "$size_bytes" "$size_human" "$written" \
    "$archive" "$archive_bytes" "$archive_seconds" "$unpacked_bytes" "$unpacked_human" \
    "$engine_in_app" "${steps[@]}" <<'EOF'
import json, sys
(scratch, report, build_s, size_b, size_h, written,
 archive, archive_b, archive_s, unpacked_b, unpacked_h, engine_in_app, *steps) = sys.argv[1:]
status, seconds = {}, {}
for item in steps:
    name, _, value = item.partition("=")
    status[name], _, step_seconds = value.partition(":")
    seconds[name] = float(step_seconds)


def document(name):
    text = open(f"{scratch}/{name}.out", encoding="utf-8").read()
    try:
        return json.loads(text[text.index("{"):])
    except ValueError:
        return None


def export_ok(name):
    return status[name] == "0" and ((document(name) or {}).get("verification") or {}).get("ok") is True


self_test, train, predict = document("self_test"), document("train"), document("predict")
train_fast, evaluated = document("train_fast"), document("evaluate")
results = (predict or {}).get("results", [])
try:
    log_text = open(f"{scratch}/userdata-windowed/logs/imgcls.log", encoding="utf-8").read()
except OSError:
    log_text = ""
try:
    engine_seen = open(f"{scratch}/engine_seen", encoding="utf-8").read().strip()
except OSError:
    engine_seen = ""
checks = {
    "self_test exits 0": status["self_test"] == "0",
    'self_test prints "ok": true': bool(self_test and self_test.get("ok") is True),
    "train exits 0": status["train"] == "0",
    "train prints JSON": train is not None,
    "train used the shipped photo backbone (efficientnet_lite0)": (train or {}).get("preset") == "efficientnet_lite0",
    "train fast_cnn exits 0 and prints JSON": status["train_fast"] == "0" and train_fast is not None,
    "predict exits 0": status["predict"] == "0",
    "predict labels every image": bool(results) and all(r.get("label") for r in results),
    "evaluate exits 0 and prints an accuracy": status["evaluate"] == "0"
        and isinstance((evaluated or {}).get("accuracy"), (int, float)),
    "export to onnx exits 0 and agrees with the model": export_ok("export"),
    "fast_cnn export to onnx agrees with the model": export_ok("export_onnx_fast"),
    "export to tflite agrees with the model": export_ok("export_tflite"),
    "export to saved_model agrees with the model": export_ok("export_saved"),
    "windowed self_test (no stdout/stderr) exits 0": status["windowed"] == "0",
    'windowed self_test logs "ok": true': '"ok": true' in log_text,
    "nothing written inside the bundle": not written,
    "release archive under 500 MB": int(archive_b) < 500_000_000,
}
if engine_in_app == "1":  # this version of the app has the engine process
    checks["the self-test's window started its engine (imgcls-desktop --engine)"] = bool(engine_seen)
summary = {
    "ok": all(checks.values()),
    "checks": checks,
    "build_seconds": None if build_s == "null" else float(build_s),
    "bundle_bytes": int(size_b), "bundle_size": size_h,
    "archive": archive, "archive_bytes": int(archive_b),
    "archive_seconds": None if archive_s == "null" else float(archive_s),
    "unpacked_bytes": int(unpacked_b), "unpacked_size": unpacked_h,
    "smoke_seconds": seconds,
    "self_test": self_test, "predicted_images": len(results),
    "engine_processes_seen": sorted(set(engine_seen.splitlines()))[:3],
    "written_inside_bundle": written.splitlines(),
}
with open(report, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
print("== smoke checks")
for name, passed in checks.items():
    print(f"   {'PASS' if passed else 'FAIL'}  {name}")
print(f"== release archive: {archive}: {int(archive_b) / 1e6:.1f} MB; unpacked {int(unpacked_b) / 1e6:.1f} MB")
print(f"== report: {report}")
sys.exit(0 if summary["ok"] else 1)
EOF
