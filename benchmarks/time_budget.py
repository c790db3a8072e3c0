"""Does "train for N minutes" take N minutes? The user's command, timed from outside.

Runs ``imgcls train <CIFAR-10> --time-budget B --out m.keras --json`` as a user would
(no --preset: the recommendation chooses, and so does the held-out size), measures the
process's wall-clock from just before it starts to its exit, then evaluates the saved
model on CIFAR-10's test split (not timed). Each row says where the job's time went
(read from the model's metadata), how many images were held out, and the machine's
load average around the run.

    python benchmarks/time_budget.py --budgets 300 600 [--tutorial]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from machine import cifar10_root, machine_description, write_results

HERE = Path(__file__).resolve().parent
IMGCLS = HERE.parent / ".venv" / "bin" / "imgcls"


def run_one(root, budget, extra=(), extra_env=None):
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "m.keras"
        env = {**os.environ, "IMGCLS_DATA_DIR": folder, **(extra_env or {})}  # its run record stays out of yours
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        done = subprocess.run([str(IMGCLS), "train", str(root), "--time-budget", str(budget), "--out", str(out),
                               "--json", *extra], capture_output=True, text=True, env=env)
        wall = time.monotonic() - started
        load_after = os.getloadavg()[0]
        if done.returncode not in (0, 3):
            raise SystemExit(f"imgcls train failed ({done.returncode}):\n{done.stderr[-3000:]}")
        summary = json.loads(done.stdout)
        warnings = [line for line in done.stderr.splitlines() if line.startswith("imgcls: warning")]
        for line in warnings:
            print(f"budget {budget:g}: {line}", file=sys.stderr)
        evaluated = subprocess.run([str(IMGCLS), "evaluate", str(out), str(root), "--json"], capture_output=True,
                                   text=True, env=env)
        if evaluated.returncode not in (0, 3):
            raise SystemExit(f"imgcls evaluate failed:\n{evaluated.stderr[-3000:]}")
        report = json.loads(evaluated.stdout)
        from imgcls_desktop.core.model_io import check_model_file

        _config, metadata = check_model_file(out)  # reads the zip's JSON, no TensorFlow
    training = metadata["training"]
    return {
        "budget": budget, "wall": wall, "accuracy": report["accuracy"], "split": report.get("split"),
        "preset": summary.get("preset"), "epochs": training["epochs_run"],
        "timings": training.get("timings", {}), "num_val": training["num_val_images"],
        "widths": training.get("widths"), "load": (load_before, load_after),
        "precision": training.get("precision", "float32"),
        "recorded": summary.get("run_id") is not None, "warnings": warnings,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budgets", type=float, nargs="+", default=[300])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tag", default="")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="set for imgcls train, e.g. IMGCLS_MIXED_PRECISION=bf16 (repeatable)")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    root = cifar10_root()
    rows = []
    for budget in args.budgets:
        for _ in range(args.repeats):
            row = run_one(root, budget, extra_env=extra_env)
            print(json.dumps(row), flush=True)
            rows.append(row)
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M")
    lines = [
        "# Time budgets, CIFAR-10: the whole job inside the budget",
        "",
        f"- Date: {datetime.now():%Y-%m-%d %H:%M}",
        f"- Machine: {machine_description()}",
        "- Command: `imgcls train <cifar10> --time-budget B --out m.keras --json` (no --preset: the recommendation "
        "chooses the model and the held-out size), wall-clock measured from outside the process, start to exit; "
        "then `imgcls evaluate m.keras <cifar10>` on the test split (10,000 images, not timed)",
        f"- Run by: `python benchmarks/time_budget.py --budgets {' '.join(f'{b:g}' for b in args.budgets)}"
        + "".join(f" --env {item}" for item in args.env) + "`",
        "",
        "| budget s | wall s | over budget | test accuracy | preset | widths, precision | epochs | held out "
        "| before fit s "
        "| fit s | after fit s (planned) | run recorded | load avg before/after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        timings = row["timings"]
        lines.append(
            f"| {row['budget']:g} | {row['wall']:.1f} | {100 * (row['wall'] / row['budget'] - 1):+.1f}% "
            f"| {row['accuracy']:.4f} | {row['preset']} | {row['widths'] or 'default'}, {row['precision']} "
            f"| {row['epochs']} "
            f"| {row['num_val']} | {timings.get('before_fit', '')} | {timings.get('fit', '')} "
            f"| {timings.get('after_fit', '')} ({timings.get('after_fit_planned', '')}) "
            f"| {'yes' if row['recorded'] else 'no'} | {row['load'][0]:.1f} / {row['load'][1]:.1f} |")
    lines += ["", "before fit = from the start of the command to the first batch (imports, scan, decoding, "
              "building the model); after fit = calibration; the save and the run record (its evaluation on "
              "the test split) follow it and are in the wall time; planned = what the schedule set aside for "
              "all three."]
    write_results(f"time-budget-{stamp}{args.tag}", lines)


if __name__ == "__main__":
    sys.exit(main())
