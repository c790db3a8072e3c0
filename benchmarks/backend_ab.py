"""XLA and oneDNN, A/B per preset: training images/s with each switch on and off.

    python benchmarks/backend_ab.py [--rounds 3] [--steps 20] [--presets fast_cnn small_cnn tutorial_cnn]

``TF_ENABLE_ONEDNN_OPTS`` is read when TensorFlow loads, so every measurement is its own
child process; the combinations of each preset are interleaved round by round so
that a busy moment of the machine does not land on one of them only. TensorFlow turns
oneDNN on by itself only on CPUs with AVX-512 VNNI and newer; the "oneDNN, AVX2 only"
column caps oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA=AVX2``) to show what an
AVX2-only laptop gets when we turn it on. Each child trains
the preset's model (its batch size, its optimizer) on random 32x32 images held in memory
for a few warm-up steps, then times ``--steps`` steps. Medians over rounds go to
benchmarks/results/.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def child(spec):
    import numpy as np

    from imgcls_desktop.core.backend import keras_module, tensorflow_module
    from imgcls_desktop.core.models import build_model, forward_flops, get_preset
    from imgcls_desktop.core.training import _optimizer

    keras, tf = keras_module(), tensorflow_module()
    preset = get_preset(spec["preset"])
    batch = preset.batch_size
    keras.utils.set_random_seed(0)
    model = build_model(preset, 10, 32)
    model.compile(optimizer=_optimizer(keras, preset, preset.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=preset.label_smoothing),
                  jit_compile=spec["jit"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * 4, 32, 32, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, batch * 4), 10)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)  # trace and warm up
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=spec["steps"], epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    rate = batch * spec["steps"] / seconds
    print("RESULT " + json.dumps({"images_per_second": rate,
                                  "gflops": 3 * forward_flops(model) * rate / 1e9}), flush=True)


def measure(spec):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if spec["onednn"] else "0", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if spec.get("isa"):
        env["ONEDNN_MAX_CPU_ISA"] = spec["isa"]
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["fast_cnn", "small_cnn", "tutorial_cnn"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))

    from benchmarks.machine import machine_description, write_results

    # (jit, oneDNN, oneDNN's instruction-set cap)
    names = {(False, False, None): "plain", (True, False, None): "XLA", (False, True, None): "oneDNN",
             (True, True, None): "XLA + oneDNN", (False, True, "AVX2"): "oneDNN, AVX2 only"}
    combos = list(names)
    results = {}
    for round_index in range(args.rounds):
        for preset in args.presets:
            for jit, onednn, isa in combos:
                spec = {"preset": preset, "jit": jit, "onednn": onednn, "isa": isa, "steps": args.steps}
                row = measure(spec)
                results.setdefault((preset, jit, onednn, isa), []).append(row["images_per_second"])
                print(round_index, spec, f"{row['images_per_second']:.0f} img/s", flush=True)
    lines = [
        "# XLA and oneDNN A/B per preset (training images/s, medians)",
        "",
        f"- Date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"- Machine: {machine_description()}",
        f"- Command: `python benchmarks/backend_ab.py --rounds {args.rounds} --steps {args.steps}`; "
        "each cell is the median of the rounds, the combinations interleaved",
        "",
        "| preset | " + " | ".join(names.values()) + " | best |",
        "| --- " * (len(names) + 2) + "|",
    ]
    for preset in args.presets:
        medians = {combo: statistics.median(results[(preset, *combo)]) for combo in combos}
        best = max(medians, key=medians.get)
        cells = " | ".join(f"{medians[combo]:.0f}" for combo in names)
        plain = medians[(False, False, None)]
        lines.append(f"| {preset} | {cells} | {names[best]} ({medians[best] / plain:.2f}x plain) |")
    write_results(f"backend-ab-{datetime.date.today().isoformat()}", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
