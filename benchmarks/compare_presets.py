"""Side by side on CIFAR-10 at equal wall-clock budgets: the notebook baseline and our presets.

    python benchmarks/compare_presets.py                 # budgets of 2, 5, 10 and 30 minutes
    python benchmarks/compare_presets.py --quick         # about 3 minutes, for day-to-day work
    python benchmarks/compare_presets.py --budgets 600 --presets fast_cnn small_cnn

Every training run is a child process (so each has its own peak memory and nothing
warms the next), evaluated on the 10,000-image test split. The baseline is the seed
notebook's way: the TensorFlow tutorial CNN, Adam, batch 32, the whole training set as an
in-memory float array, ``model.fit``, stopped when the budget is spent. Our presets go
through ``core.training.train`` with ``time_budget``, exactly as ``imgcls train
--time-budget`` does. Decoding the JPEGs is not part of any budget. The same run also
measures the machine's fp32 matmul rate (the ceiling), inference latency and start-up,
and writes one Markdown table to benchmarks/results/. Run it on a quiet machine.
"""

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from imgcls_desktop.core.defaults import DEFAULT_SEED  # noqa: E402  (after the path is set)

GOALS = {600: 0.85, 1800: 0.90}  # issue 6: test accuracy at 10 and 30 minutes
GFLOPS_GOAL = 0.60  # achieved training GFLOP/s as a fraction of the matmul rate


def _limited(items, per_class):
    from benchmarks.machine import limited_per_class

    return limited_per_class(items, per_class)


def _baseline(scan, budget, train_limit, seed):
    """The notebook way, with a callback that ends ``fit`` when the budget is spent."""
    from imgcls_desktop.core.backend import keras_module
    from imgcls_desktop.core.models import build_tutorial_cnn, forward_flops
    from imgcls_desktop.core.pipeline import decode_items

    keras = keras_module()
    x, y, _ = decode_items(_limited(scan.splits["train"], train_limit), 32)
    x_test, y_test, _ = decode_items(scan.splits["test"], 32)
    x, x_test = x.astype("float32"), x_test.astype("float32")  # in-memory arrays, as notebooks do
    keras.utils.set_random_seed(seed)
    model = build_tutorial_cnn(len(scan.class_names), 32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    state = {"batches": 0}

    class Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            state["start"] = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            state["batches"] += 1
            if time.perf_counter() - state["start"] >= budget:
                self.model.stop_training = True

    model.fit(x, y, batch_size=32, epochs=10_000, callbacks=[Budget()], verbose=0)
    fit_seconds = time.perf_counter() - state["start"]
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    return {
        "test_accuracy": float(accuracy), "images_seen": state["batches"] * 32,
        "fit_seconds": fit_seconds, "forward_mflops": forward_flops(model) / 1e6,
        "num_train": int(len(x)),
    }


def _preset(scan, name, budget, train_limit, seed):
    from imgcls_desktop.core.dataset import ImageItem
    from imgcls_desktop.core.evaluation import evaluate_items
    from imgcls_desktop.core.model_io import from_training
    from imgcls_desktop.core.training import TrainingConfig, train

    scan.splits["train"] = _limited(scan.splits["train"], train_limit)
    result = train(scan, TrainingConfig(preset=name, time_budget=budget, seed=seed,
                                        validation_split=0.02))
    meta = result.metadata["training"]
    test_items = [ImageItem(item.path, item.label) for item in scan.splits["test"]]
    report = evaluate_items(from_training(result), test_items, scan.class_names)
    return {
        "test_accuracy": report.accuracy, "images_seen": meta["images_seen"], "fit_seconds": meta["fit_seconds"],
        "forward_mflops": meta["forward_mflops"], "num_train": meta["num_train_images"],
        "ece_before": result.metadata["calibration"].get("ece_before"),
        "ece_after": result.metadata["calibration"].get("ece_after"),
    }


def child(spec):
    """One training run, in this (child) process; prints one RESULT line."""
    from benchmarks.machine import cifar10_root

    from imgcls_desktop.core.dataset import scan_dataset

    scan = scan_dataset(cifar10_root(), validate=False, find_duplicates=False)
    started = time.perf_counter()
    if spec["config"] == "baseline":
        row = _baseline(scan, spec["budget"], spec["train_limit"], spec["seed"])
    else:
        row = _preset(scan, spec["config"], spec["budget"], spec["train_limit"], spec["seed"])
    row.update(spec)
    row["wall_seconds"] = time.perf_counter() - started
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(row), flush=True)


def _run_child(spec):
    output = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                            stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT).stdout
    for line in output.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"no result from {spec}")


def _startup_seconds(runs):
    from benchmarks.startup_frozen import launch_once

    # The checkout's own venv, else the one running this script (a worktree has none).
    candidates = [ROOT / ".venv" / "bin" / "imgcls-desktop", Path(sys.executable).with_name("imgcls-desktop")]
    source = next((path for path in candidates if path.exists()), None)
    if source is None:
        print("start-up not measured: no imgcls-desktop launcher beside this Python", flush=True)
        return None
    times = []
    with tempfile.TemporaryDirectory() as data_dir:
        launch_once([str(source)], data_dir, 180)  # warm-up, not counted
        for _ in range(runs):
            times.append(launch_once([str(source)], data_dir, 180)[0])
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[120, 300, 600, 1800],
                        help="training seconds per run")
    parser.add_argument("--budget", type=float, help="one budget (same as --budgets B)")
    parser.add_argument("--presets", nargs="*", default=["fast_cnn"],
                        help="our presets to run (none: the baseline alone)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--train-limit", type=int, default=0, help="training images per class (0: all)")
    parser.add_argument("--quick", action="store_true",
                        help="one 45 s budget on 1,000 images per class, short latency runs")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--tag", default="", help="added to the results file name")
    parser.add_argument("--training-only", action="store_true",
                        help="leave out the inference latency and start-up measurements")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    if args.budget:
        args.budgets = [args.budget]
    if args.quick:
        args.budgets, args.train_limit = [45], args.train_limit or 1000

    from benchmarks import inference_latency
    from benchmarks.machine import cifar10_root, machine_description, matmul_gflops, write_results

    from imgcls_desktop.core.backend import versions

    cifar10_root()  # unpack once, before any timing
    ceilings = [matmul_gflops()]
    print(f"fp32 matmul 2048x2048: {ceilings[0]:.1f} GFLOP/s", flush=True)
    configs = ([] if args.no_baseline else ["baseline"]) + list(args.presets)
    rows = []
    for budget in args.budgets:
        for config in configs:
            spec = {"config": config, "budget": budget, "train_limit": args.train_limit, "seed": args.seed}
            rows.append(_run_child(spec))
            print(json.dumps(rows[-1]), flush=True)
    ceilings.append(matmul_gflops())
    ceiling = max(ceilings)  # the stricter yardstick of the two
    latency, startup = None, None
    if not args.training_only:
        latency = inference_latency.measure(
            presets=[(name, 32) for name in ("fast_cnn", "small_cnn", "tutorial_cnn")] + [("mobilenet_v2", 224)],
            repeats=10 if args.quick else 50, folder_images=64 if args.quick else 256)
        startup = _startup_seconds(2 if args.quick else 5)

    lib = versions()
    command = "python benchmarks/compare_presets.py" + (" --quick" if args.quick else "")
    if not args.quick:
        command += f" --budgets {' '.join(f'{b:g}' for b in args.budgets)} --presets {' '.join(args.presets)}".rstrip()
        command += " --no-baseline" if args.no_baseline else ""
        command += f" --train-limit {args.train_limit}" if args.train_limit else ""
        command += f" --tag {args.tag}" if args.tag else ""
        command += " --training-only" if args.training_only else ""
    lines = [
        "# Training speed and accuracy at equal wall-clock budgets, CIFAR-10" + (" (quick mode)" if args.quick else ""),
        "",
        f"- Date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"- Machine: {machine_description()}",
        f"- TensorFlow {lib['tensorflow']}, Keras {lib['keras']}, Python {sys.version.split()[0]}",
        f"- Training images: {rows[0]['num_train'] if rows else '?'}"
        + (" (2% of them held out for validation by our presets)" if args.presets else "")
        + "; test images: 10,000",
        f"- fp32 matmul (2048x2048) measured at the start and end of this run: "
        f"{' and '.join(f'{c:.1f}' for c in ceilings)} GFLOP/s (ceiling used: the higher, {ceiling:.1f}; "
        "each is the faster of TensorFlow's and NumPy's matmul)",
        f"- Command: `{command}`",
        "- baseline = the seed notebook: tutorial CNN, Adam 1e-3, batch 32, in-memory float arrays, "
        "`model.fit`. Decoding JPEGs is outside every budget. GFLOP/s = 3 x forward FLOPs x images "
        "trained / fit seconds.",
        "",
        "| budget | config | test accuracy | epochs | images/s | forward MFLOP | achieved GFLOP/s "
        "| % of matmul | peak RSS (MB) | fit s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        rate = row["images_seen"] / max(row["fit_seconds"], 1e-9)
        gflops = 3 * row["forward_mflops"] * 1e6 * rate / 1e9
        row["gflops"] = gflops
        lines.append(
            f"| {row['budget'] / 60:g} min | {row['config']} | {row['test_accuracy']:.4f} "
            f"| {row['images_seen'] / row['num_train']:.1f} "
            f"| {rate:.0f} | {row['forward_mflops']:.1f} | {gflops:.1f} | {100 * gflops / ceiling:.0f}% "
            f"| {row['peak_rss_mb']:.0f} | {row['fit_seconds']:.0f} |")
    lines += ["", "## Goals (issue 6)", ""]
    for budget, goal in GOALS.items():
        got = [r for r in rows if r["budget"] == budget and r["config"] != "baseline"]
        if got:
            best = max(got, key=lambda r: r["test_accuracy"])
            short = 100 * (goal - best["test_accuracy"])
            verdict = "met" if best["test_accuracy"] >= goal else f"not met ({short:.1f} points short)"
            lines.append(f"- {goal:.0%} at {budget / 60:g} minutes: {best['config']} "
                         f"{best['test_accuracy']:.2%}, {verdict}")
        else:
            lines.append(f"- {goal:.0%} at {budget / 60:g} minutes: not run here")
    ours = [r for r in rows if r["config"] != "baseline"]
    if ours:
        best = max(ours, key=lambda r: r["gflops"])
        share = best["gflops"] / ceiling
        lines.append(f"- Training at >= {GFLOPS_GOAL:.0%} of the matmul rate: {best['config']} "
                     f"{share:.0%} ({'met' if share >= GFLOPS_GOAL else 'not met'})")
    if latency is not None:
        lines += ["", "## Inference (same run)", "", *inference_latency.table(latency), ""]
    if startup is not None:
        lines.append(f"Start-up from source to a visible window (median): {startup:.2f} s")
    name = ("speed-quick" if args.quick else "speed") + (f"-{args.tag}" if args.tag else "")
    write_results(f"{name}-{datetime.date.today().isoformat()}", lines)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
