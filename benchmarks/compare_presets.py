"""Side-by-side preset comparison on CIFAR-10 at equal wall-clock training budgets.

    python benchmarks/compare_presets.py --budget 300 --presets tutorial_cnn small_cnn

Unpacks ../shared/datasets/cifar10-jpg.tar.gz to a cache folder (never into the repo),
trains each preset for the same number of seconds, one after another in this process,
evaluates each on the 10,000-image test split, and writes a Markdown table to
benchmarks/results/. Run it on a quiet machine; quote ratios, not lone absolute times.
"""

import argparse
import datetime
import json
import os
import platform
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARCHIVE = HERE.parent.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"
CACHE = Path(os.environ.get("IMGCLS_BENCH_CACHE", Path.home() / ".cache" / "imgcls-desktop"))


def cifar10_root():
    root = CACHE / "cifar10"
    if not (root / "test").is_dir():
        if not ARCHIVE.exists():
            raise SystemExit(f"CIFAR-10 archive not found at {ARCHIVE}")
        CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(CACHE, filter="data")
    return root


def machine_description():
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}"


def matmul_gflops(size=2048, repeats=10):
    """The machine's practical fp32 ceiling: TensorFlow matmul of two size x size matrices."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        tf.matmul(a, b).numpy()
        times.append(time.perf_counter() - started)
    times.sort()
    return 2 * size**3 / times[len(times) // 2] / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300, help="training seconds per preset")
    parser.add_argument("--presets", nargs="+", default=["tutorial_cnn", "small_cnn"])
    parser.add_argument("--train-limit", type=int, default=0, help="use only N training images per class (quick mode)")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()

    from imgcls_desktop.core.backend import versions
    from imgcls_desktop.core.dataset import ImageItem, scan_dataset
    from imgcls_desktop.core.evaluation import evaluate_items
    from imgcls_desktop.core.model_io import from_training
    from imgcls_desktop.core.training import TrainingConfig, train

    root = cifar10_root()
    ceiling = matmul_gflops()
    print(f"fp32 matmul 2048x2048: {ceiling:.1f} GFLOP/s", flush=True)
    t0 = time.perf_counter()
    scan = scan_dataset(root, validate=False, find_duplicates=False)
    scan_seconds = time.perf_counter() - t0
    if args.train_limit:
        kept, per_class = [], {}
        for item in scan.splits["train"]:
            if per_class.get(item.label, 0) < args.train_limit:
                per_class[item.label] = per_class.get(item.label, 0) + 1
                kept.append(item)
        scan.splits["train"] = kept
    rows = []
    for preset in args.presets:
        config = TrainingConfig(preset=preset, time_budget=args.budget, seed=args.seed,
                                validation_split=0.02)
        started = time.perf_counter()
        result = train(scan, config)
        wall = time.perf_counter() - started
        meta = result.metadata["training"]
        test_items = [ImageItem(i.path, i.label) for i in scan.splits["test"]]
        t1 = time.perf_counter()
        report = evaluate_items(from_training(result), test_items, scan.class_names)
        eval_seconds = time.perf_counter() - t1
        gflops = 3 * meta["forward_mflops"] * 1e6 * meta["images_seen"] / meta["fit_seconds"] / 1e9
        rows.append({
            "preset": preset, "test_accuracy": report.accuracy, "epochs": meta["epochs_run"],
            "images_seen": meta["images_seen"], "fit_seconds": meta["fit_seconds"],
            "wall_seconds": round(wall, 1), "images_per_second": meta["images_seen"] / meta["fit_seconds"],
            "forward_mflops": meta["forward_mflops"], "gflops": gflops,
            "best_val_accuracy": result.best_val_accuracy, "eval_seconds": round(eval_seconds, 1),
        })
        print(json.dumps(rows[-1]), flush=True)

    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lib = versions()
    lines = [
        f"# Presets at {args.budget:g} s of training, CIFAR-10",
        "",
        f"- Date: {stamp}",
        f"- Machine: {machine_description()}",
        f"- TensorFlow {lib['tensorflow']}, Keras {lib['keras']}",
        f"- Training images: {len(scan.splits['train'])} (2% held out for validation), "
        f"test images: {len(scan.splits['test'])}; scan took {scan_seconds:.1f} s",
        f"- Measured fp32 matmul (2048x2048) in this run: {ceiling:.1f} GFLOP/s, the practical ceiling",
        "- Command: `python benchmarks/compare_presets.py --budget "
        f"{args.budget:g} --presets {' '.join(args.presets)}`"
        + (f" --train-limit {args.train_limit}" if args.train_limit else ""),
        "",
        "| preset | test accuracy | epochs | images/s | forward MFLOP | achieved GFLOP/s | % of matmul rate "
        "| fit s | wall s (incl. decode) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['preset']} | {row['test_accuracy']:.4f} | {row['epochs']} | {row['images_per_second']:.0f} "
            f"| {row['forward_mflops']:.1f} | {row['gflops']:.1f} | {100 * row['gflops'] / ceiling:.0f}% "
            f"| {row['fit_seconds']:.0f} | {row['wall_seconds']:.0f} |"
        )
    out = HERE / "results" / f"presets-{int(args.budget)}s-{datetime.date.today().isoformat()}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
