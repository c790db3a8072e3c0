"""Single-image latency and folder throughput: our Predictor against naive ``Model.predict``.

    python benchmarks/inference_latency.py [--repeats 50]

For each model (the from-scratch CNNs at 32x32, MobileNetV2 at 224x224 with random
weights: latency does not depend on the weights' values), measures in one run:
- one image through the warmed, traced Predictor path (what a dropped image takes),
- one image through ``Model.predict`` (what notebooks do),
- a 256-image folder batch through the Predictor vs ``Model.predict`` called per image.
Writes a Markdown table to benchmarks/results/.
"""

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def median_ms(function, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(presets=(("fast_cnn", 32), ("small_cnn", 32), ("tutorial_cnn", 32), ("mobilenet_v2", 224)),
            repeats=50, folder_images=256):
    """Rows of (preset, size, Predictor ms, Model.predict ms, batched img/s, per-image img/s)."""
    import numpy as np

    from imgcls_desktop.core.inference import Predictor
    from imgcls_desktop.core.model_io import LoadedModel
    from imgcls_desktop.core.models import build_model, get_preset
    from imgcls_desktop.core.tta import views_per_image

    rows = []
    rng = np.random.default_rng(0)
    for preset, size in presets:
        model = build_model(preset, 10, size, weights=None)
        # What a trained model of this preset carries: a temperature (its value does not
        # change the time) and the preset's test-time augmentation, so the Predictor does
        # the work it does in the app.
        tta = get_preset(preset).tta
        metadata = {"calibration": {"temperature": 1.5, "unknown_threshold": 0.5}}
        if tta:
            metadata["test_time_augmentation"] = tta
        loaded = LoadedModel(model=model, path=None, class_names=[f"c{i}" for i in range(10)],
                             image_size=(size, size), metadata=metadata)
        predictor = Predictor(loaded)
        predictor.warm_up()
        one = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        model.predict(one.astype("float32"), verbose=0)  # warm Model.predict too
        # Called at once, inside this iteration: binding the loop variables as defaults is only for the reader.
        ours = median_ms(lambda predictor=predictor, one=one: predictor.probabilities(one), repeats)
        naive = median_ms(lambda model=model, one=one: model.predict(one.astype("float32"), verbose=0), repeats)
        folder = rng.integers(0, 256, (folder_images, size, size, 3), dtype=np.uint8)
        started = time.perf_counter()
        predictor.probabilities(folder)
        batched = folder_images / (time.perf_counter() - started)
        count = min(folder_images, 64)
        started = time.perf_counter()
        for index in range(count):
            model.predict(folder[index:index + 1].astype("float32"), verbose=0)
        per_image = count / (time.perf_counter() - started)
        rows.append((preset, size, ours, naive, batched, per_image, views_per_image(tta)))
        print(rows[-1], flush=True)
    return rows


def table(rows):
    lines = [
        "| model | input | views per image (TTA) | one image, Predictor (ms) | one image, Model.predict (ms) "
        "| speed-up | folder, Predictor batched (img/s) | folder, Model.predict per image (img/s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for preset, size, ours, naive, batched, per_image, views in rows:
        lines.append(f"| {preset} | {size}x{size} | {views} | {ours:.1f} | {naive:.1f} | {naive / ours:.1f}x "
                     f"| {batched:.0f} | {per_image:.0f} |")
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--folder-images", type=int, default=256)
    args = parser.parse_args()

    from benchmarks.machine import machine_description, write_results

    from imgcls_desktop.core.backend import versions

    rows = measure(repeats=args.repeats, folder_images=args.folder_images)
    lib = versions()
    lines = [
        "# Inference latency and throughput",
        "",
        f"- Date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"- Machine: {machine_description()}",
        f"- TensorFlow {lib['tensorflow']}, Keras {lib['keras']}; medians of {args.repeats} calls",
        "- Command: `python benchmarks/inference_latency.py`",
        "",
        *table(rows),
    ]
    write_results(f"inference-{datetime.date.today().isoformat()}", lines)


if __name__ == "__main__":
    main()
