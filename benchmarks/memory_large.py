"""Peak memory while training on 20,000 photos at 224x224 (3 GB once decoded).

    python benchmarks/memory_large.py [--images 20000] [--budget 60]

Makes the dataset once in the benchmark cache folder (CIFAR-10 training images enlarged
to 224x224 JPEGs, 10 class folders; never in the repo), then, in a child process, runs
``core.training.train`` with MobileNetV2 at 224x224 (random backbone weights written to a
local file: memory and compute do not depend on their values; nothing is downloaded)
with the frozen-feature cache off, so every batch streams from the decoded-image disk
cache for ``--budget`` seconds. Reports the child's peak resident memory (ru_maxrss),
the decode time and the cache file's size, in benchmarks/results/.
"""

import argparse
import datetime
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def make_dataset(root, count):
    from benchmarks.machine import cifar10_root
    from PIL import Image

    done = root / "COMPLETE"
    if done.exists() and int(done.read_text()) == count:
        return root
    source = cifar10_root() / "train"
    classes = sorted(p.name for p in source.iterdir() if p.is_dir())
    per_class = count // len(classes)
    for name in classes:
        target = root / name
        target.mkdir(parents=True, exist_ok=True)
        for index, path in enumerate(sorted((source / name).iterdir())[:per_class]):
            with Image.open(path) as image:
                image.convert("RGB").resize((224, 224), Image.BICUBIC).save(target / f"{index:05d}.jpg", quality=90)
    done.write_text(str(count))
    return root


def child(spec):
    from imgcls_desktop.core.backend import keras_module
    from imgcls_desktop.core.models import Augmentation
    from imgcls_desktop.core.training import TrainingConfig, train

    keras = keras_module()
    weights = Path(spec["weights"])
    if not weights.exists():
        keras.utils.set_random_seed(0)
        keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(224, 224, 3),
                                       pooling="avg").save_weights(weights)
    events = {"decode_seconds": None}
    started = time.perf_counter()

    def on_progress(event):
        if event.kind == "batch" and events["decode_seconds"] is None:
            events["decode_seconds"] = time.perf_counter() - started

    result = train(spec["dataset"], TrainingConfig(
        preset="mobilenet_v2", image_size=224, time_budget=spec["budget"], weights=str(weights),
        cache_features=False, augmentation=Augmentation(flip=True)), on_progress=on_progress)
    meta = result.metadata["training"]
    print("RESULT " + json.dumps({
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "images_trained": meta["images_seen"], "fit_seconds": meta["fit_seconds"],
        "num_train": meta["num_train_images"], "num_val": meta["num_val_images"],
        "first_batch_after_s": events["decode_seconds"], "wall_s": time.perf_counter() - started,
    }), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--budget", type=float, default=60)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))

    from benchmarks.machine import CACHE, machine_description, write_results

    dataset = make_dataset(CACHE / f"large224-{args.images}", args.images)
    cache_dir = CACHE / "decoded"
    # The first run must decode: a cache left by an earlier (or interrupted) run is removed.
    shutil.rmtree(cache_dir, ignore_errors=True)
    runs = []
    for attempt in ("first run (decodes to the disk cache)", "second run (reads the cache)"):
        spec = {"dataset": str(dataset), "budget": args.budget,
                "weights": str(CACHE / "mobilenet_v2_random.weights.h5")}
        env = dict(__import__("os").environ, IMGCLS_CACHE_DIR=str(cache_dir), TF_CPP_MIN_LOG_LEVEL="2")
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                             stdout=subprocess.PIPE, text=True, check=True).stdout
        row = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
        row["run"] = attempt
        runs.append(row)
        print(row, flush=True)
    cache_bytes = sum(p.stat().st_size for p in cache_dir.glob("*.u8"))
    lines = [
        f"# Peak memory: {args.images:,} photos at 224x224, MobileNetV2 streaming from the disk cache",
        "",
        f"- Date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"- Machine: {machine_description()}",
        f"- Command: `python benchmarks/memory_large.py --images {args.images} --budget {args.budget:g}`",
        f"- Decoded pixels: {args.images * 224 * 224 * 3 / 1024**3:.2f} GiB; disk cache files: "
        f"{cache_bytes / 1024**3:.2f} GiB",
        "- Each run is a fresh process; peak RSS is its ru_maxrss. Goal (issue 6): under 3 GB.",
        "",
        "| run | peak RSS (MB) | first training batch after (s) | images trained | fit s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in runs:
        lines.append(f"| {row['run']} | {row['peak_rss_mb']:.0f} | {row['first_batch_after_s']:.0f} "
                     f"| {row['images_trained']} | {row['fit_seconds']:.0f} |")
    write_results(f"memory-large-{datetime.date.today().isoformat()}", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
