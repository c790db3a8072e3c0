"""A photo folder far larger than the decode cache: memory and speed stay flat (issue 14).

Generates ``--count`` small JPEGs (10 classes of noisy coloured shapes) in a temporary
folder, sets the decode cache's disk budget to a quarter of the set's decoded size (so
training streams: each batch decoded on every core inside tf.data, nothing kept), trains
one epoch of ``--preset`` through ``core.training.train``, and reports resident memory and
images/s for each quarter of the epoch. Flat means the last quarter is like the first.

    .venv/bin/python benchmarks/streaming_large.py --count 200000
"""

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 1024**2


def _write_chunk(job):
    import numpy as np

    from synthetic import CLASS_STYLES, make_shape_image

    root, start, stop, per_class, size = job
    rng = np.random.default_rng(start)
    styles = CLASS_STYLES + [("circle", (30, 200, 200)), ("square", (240, 120, 20)), ("triangle", (120, 120, 120)),
                             ("ring", (20, 120, 60)), ("cross", (250, 250, 250))]
    for index in range(start, stop):
        label = index // per_class
        kind, colour = styles[label]
        folder = Path(root) / f"class{label}"
        make_shape_image(kind, colour, size, rng).save(folder / f"{index:07d}.jpg", quality=85)
    return stop - start


def generate(root, count, size, classes=10, workers=None):
    per_class = count // classes
    for label in range(classes):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
    chunk = 2000
    jobs = [(str(root), start, min(start + chunk, per_class * classes), per_class, size)
            for start in range(0, per_class * classes, chunk)]
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        return sum(pool.map(_write_chunk, jobs))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--jpeg-size", type=int, default=48, help="pixels of each JPEG's side")
    parser.add_argument("--image-size", type=int, default=32, help="training resolution")
    parser.add_argument("--preset", default="tutorial_cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this folder and keep it")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="imgcls-streaming-"))
    root = args.keep or workdir / "photos"
    try:
        started = time.perf_counter()
        made = generate(root, args.count, args.jpeg_size) if not (root / "class9").is_dir() else args.count
        generate_seconds = time.perf_counter() - started
        decoded = made * args.image_size ** 2 * 3
        budget = decoded / 4
        # Before core is imported: the memory limit is read once, at import.
        os.environ["IMGCLS_MEMORY_LIMIT_MB"] = "64"
        os.environ["IMGCLS_CACHE_MAX_GB"] = str(budget / 1024**3)
        os.environ["IMGCLS_CACHE_DIR"] = str(workdir / "cache")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from benchmarks.machine import machine_description, write_results

        from imgcls_desktop.core.dataset import scan_dataset
        from imgcls_desktop.core.training import TrainingConfig, train

        scan = scan_dataset(root, validate=False, find_duplicates=False)
        events = []

        def on_progress(event):
            if event.kind == "batch" and event.epoch == 1:
                events.append((time.perf_counter(), event.step, event.steps, rss_mb()))

        rss_before = rss_mb()
        result = train(scan, TrainingConfig(preset=args.preset, epochs=1, batch_size=args.batch_size,
                                            image_size=args.image_size, validation_split=0.01,
                                            early_stopping_patience=None, distribute="off"),
                       on_progress=on_progress)
        cache_files = sorted(p.name for p in (workdir / "cache").glob("*")) if (workdir / "cache").exists() else []
        steps = events[-1][2]
        lines = [f"# Streaming a set larger than the decode cache ({datetime.date.today()})", "",
                 f"{machine_description()}", "",
                 f"- {made:,} JPEGs of {args.jpeg_size}x{args.jpeg_size} px (10 classes), generated in "
                 f"{generate_seconds:.0f} s; trained at {args.image_size} px: {decoded / 1024**2:,.0f} MB decoded",
                 f"- decode cache disk budget {budget / 1024**2:,.0f} MB (a quarter of that), memory limit 64 MB: "
                 f"training streams; cache files written: {len(cache_files)}",
                 f"- {args.preset}, batch {args.batch_size}, one epoch of {steps} steps, "
                 f"{result.metadata['training']['fit_seconds']:.0f} s; validation accuracy "
                 f"{result.best_val_accuracy:.3f}; resident memory before TensorFlow loaded {rss_before:.0f} MB", "",
                 "| quarter of the epoch | steps | images/s | resident MB at start | at end | peak |",
                 "|---|---|---|---|---|---|"]
        for quarter in range(4):
            part = [e for e in events if quarter * steps / 4 < e[1] <= (quarter + 1) * steps / 4]
            if len(part) < 2:
                continue
            seconds = part[-1][0] - part[0][0]
            rate = (part[-1][1] - part[0][1]) * args.batch_size / max(seconds, 1e-6)
            lines.append(f"| {quarter + 1} | {part[0][1]}-{part[-1][1]} | {rate:,.0f} | {part[0][3]:,.0f} | "
                         f"{part[-1][3]:,.0f} | {max(e[3] for e in part):,.0f} |")
        stem = f"streaming-large-{made // 1000}k-{datetime.date.today()}"
        write_results(stem, lines)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
