"""Which parts of the fast_cnn recipe pay on this CPU: one change at a time, same budget.

    python benchmarks/ablate_fast_cnn.py --budget 600 --variants default no_lookahead ...
    python benchmarks/ablate_fast_cnn.py --list

Each variant is the fast_cnn preset with a few fields replaced (see VARIANTS), trained in a
child process on CIFAR-10 (2% held out for validation) through ``core.training.train``
with ``time_budget``, exactly as ``imgcls train --time-budget`` does, then evaluated on the
10,000 test images three ways: no test-time augmentation, flip, and flip + translate (the
same trained model, so the TTA columns compare inference rules only). Variants run one
after another, interleaved over ``--seeds``; the table goes to benchmarks/results/.
"""

import argparse
import dataclasses
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from imgcls_desktop.core.defaults import DEFAULT_SEED  # noqa: E402  (after the path is set)

# Field replacements on the fast_cnn preset. "default" is the preset as shipped; a
# variant with "base" starts from another variant's fields.
RECIPE = {"lookahead": True, "alternating_flip": True, "schedule": (0.2, 0.23, 0.07), "bias_lr_scale": 64.0}
VARIANTS = {
    "default": {},
    "recipe": dict(RECIPE),
    "recipe_no_lookahead": {"base": "recipe", "lookahead": False},
    "recipe_no_alternating_flip": {"base": "recipe", "alternating_flip": False},
    "recipe_old_schedule": {"base": "recipe", "schedule": (0.1, 0.15, 0.0)},
    "recipe_no_bias_lr": {"base": "recipe", "bias_lr_scale": 1.0},
    "no_lookahead": {"lookahead": False},
    "lookahead": {"lookahead": True},
    "no_alternating_flip": {"alternating_flip": False},
    "alternating_flip": {"alternating_flip": True},
    "airbench_schedule": {"schedule": (0.2, 0.23, 0.07)},
    "old_schedule": {"schedule": (0.1, 0.15, 0.0)},
    "bias_lr_64": {"bias_lr_scale": 64.0},
    "bias_lr_8": {"bias_lr_scale": 8.0},
    "relu": {"activation": "relu"},
    "widths_24_64_64": {"widths": (24, 64, 64)},
    "widths_32_96_96": {"widths": (32, 96, 96)},
    "widths_48_128_128": {"widths": (48, 128, 128)},
    "widths_64_192_192": {"widths": (64, 192, 192)},
    "widths_64_256_256": {"widths": (64, 256, 256)},
    "batch_256": {"batch_size": 256, "learning_rate": 0.42},
    "batch_1024": {"batch_size": 1024, "learning_rate": 0.85},
    "lr_0.4": {"learning_rate": 0.4},
    "lr_0.9": {"learning_rate": 0.9},
    "no_label_smoothing": {"label_smoothing": 0.0},
    "xla": {"jit_compile": True},
}


def variant_fields(name):
    fields = dict(VARIANTS[name])
    base = fields.pop("base", None)
    return {**(variant_fields(base) if base else {}), **fields}


def variant_preset(name):
    from imgcls_desktop.core.models import PRESETS

    return dataclasses.replace(PRESETS["fast_cnn"], **variant_fields(name))


def child(spec):
    from benchmarks.machine import cifar10_root

    from imgcls_desktop.core.calibration import compute_logits
    from imgcls_desktop.core.dataset import scan_dataset
    from imgcls_desktop.core.pipeline import decode_items
    from imgcls_desktop.core.training import TrainingConfig, train

    scan = scan_dataset(cifar10_root(), validate=False, find_duplicates=False)
    preset = variant_preset(spec["variant"])
    started = time.perf_counter()
    result = train(scan, TrainingConfig(preset=preset, time_budget=spec["budget"], epochs=spec["epochs"],
                                        seed=spec["seed"], validation_split=0.02))
    meta = result.metadata["training"]
    x_test, y_test, _ = decode_items(scan.splits["test"], 32)
    row = dict(spec)
    for mode in (None, "flip", "flip_translate"):
        logits = compute_logits(result.model, x_test, batch_size=500, tta=mode)
        row[f"acc_{mode or 'none'}"] = float((logits.argmax(1) == y_test).mean())
    row.update({
        "shipped_tta": preset.tta, "images_seen": meta["images_seen"], "fit_seconds": meta["fit_seconds"],
        "num_train": meta["num_train_images"], "forward_mflops": meta["forward_mflops"],
        "epochs_run": meta["epochs_run"], "wall_seconds": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    print("RESULT " + json.dumps(row), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--budget", type=float, default=600, help="training seconds per run")
    parser.add_argument("--epochs", type=int, default=None, help="train a fixed number of epochs instead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[DEFAULT_SEED])
    parser.add_argument("--tag", default="", help="added to the results file name")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--from-logs", nargs="+", type=Path, metavar="LOG",
                        help="write the table from the result lines earlier runs printed (their "
                             "stdout), instead of training; several runs of one study become one table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    if args.list:
        for name, fields in VARIANTS.items():
            print(f"{name:22s} {fields}")
        return 0
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; see --list")

    from benchmarks.machine import cifar10_root, machine_description, matmul_gflops

    if args.from_logs:
        rows = [json.loads(line) for log in args.from_logs for line in log.read_text().splitlines()
                if line.startswith('{"variant"')]
        args.variants = list(dict.fromkeys(row["variant"] for row in rows))
        args.seeds = sorted({row["seed"] for row in rows})
        # No matmul now: the machine may be busy, and the runs were measured earlier.
        return write_table(args, rows, [], machine_description())
    cifar10_root()
    budget = None if args.epochs else args.budget
    ceilings = [matmul_gflops()]
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            spec = {"variant": variant, "budget": budget, "epochs": args.epochs, "seed": seed}
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                 stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT).stdout
            row = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            rows.append(row)
            print(json.dumps(row), flush=True)
    ceilings.append(matmul_gflops())
    return write_table(args, rows, ceilings, machine_description())


def write_table(args, rows, ceilings, machine):
    from benchmarks.machine import write_results

    ceiling = max(ceilings) if ceilings else None
    budgets = sorted({row["budget"] for row in rows if row["budget"]})
    epochs = sorted({row["epochs"] for row in rows if row["epochs"]})
    what = ", ".join([f"{e} epochs" for e in epochs] + [f"a {b:g} s budget" for b in budgets])
    lines = [
        f"# fast_cnn ablation on CIFAR-10, {what} per run",
        "",
        f"- Date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"- Machine: {machine}",
        *([f"- fp32 matmul 2048x2048 at the start and end: {' and '.join(f'{c:.0f}' for c in ceilings)} GFLOP/s"]
          if ceilings else ["- Written from the result lines of earlier runs (--from-logs); no matmul ceiling"]),
        f"- Command: `python benchmarks/ablate_fast_cnn.py {' '.join(sys.argv[1:])}`",
        "- Test accuracy on the 10,000 test images of one trained model, with no test-time augmentation, "
        "flip, and flip + one-pixel translations; the shipped column is the preset's own rule.",
        *(["- Runs of a fixed number of epochs compare accuracy only: their images/s depend on what "
           "else the machine was doing meanwhile. Speed comes from time-budget runs on a quiet machine."]
          if epochs else []),
        "",
        "| variant | seed | shipped TTA | no TTA | flip | flip+translate | epochs | images/s | GFLOP/s "
        "| % of matmul | fit s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        rate = row["images_seen"] / max(row["fit_seconds"], 1e-9)
        gflops = 3 * row["forward_mflops"] * rate / 1e3
        share = f"{100 * gflops / ceiling:.0f}%" if ceiling else "-"
        shipped = row[f"acc_{row['shipped_tta'] or 'none'}"]
        lines.append(
            f"| {row['variant']} | {row['seed']} | {shipped:.4f} | {row['acc_none']:.4f} | {row['acc_flip']:.4f} "
            f"| {row['acc_flip_translate']:.4f} | {row['images_seen'] / row['num_train']:.1f} | {rate:.0f} "
            f"| {gflops:.0f} | {share} | {row['fit_seconds']:.0f} |")
    if len(args.seeds) > 1:
        lines += ["", "Medians over seeds:", "", "| variant | shipped TTA | flip+translate | epochs |",
                  "| --- | --- | --- | --- |"]
        for variant in args.variants:
            mine = [r for r in rows if r["variant"] == variant]
            shipped = statistics.median(r[f"acc_{r['shipped_tta'] or 'none'}"] for r in mine)
            both = statistics.median(r["acc_flip_translate"] for r in mine)
            epochs = statistics.median(r["images_seen"] / r["num_train"] for r in mine)
            lines.append(f"| {variant} | {shipped:.4f} | {both:.4f} | {epochs:.1f} |")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    write_results(f"ablation{('-' + args.tag) if args.tag else ''}-{stamp}", lines)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
