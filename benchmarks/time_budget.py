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


def run_one(root, budget, extra=()):
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "m.keras"
        env = {**os.environ, "IMGCLS_DATA_DIR": folder}  # its run record stays out of yours
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        done = subprocess.run([str(IMGCLS), "train", str(root), "--time-budget", str(budget), "--out", str(out),
                               "--json", *extra], capture_output=True, text=True, env=env)
        wall = time.monotonic() - started
        load_after = os.getloadavg()[0]
        if done.returncode not in (0, 3):
            raise SystemExit(f"imgcls train failed ({done.returncode}):\n{done.stderr[-3000:]}")
        summary = json.loads(done.stdout)
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
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budgets", type=float, nargs="+", default=[300])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    root = cifar10_root()
    rows = []
    for budget in args.budgets:
        for _ in range(args.repeats):
            row = run_one(root, budget)
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
        f"- Run by: `python benchmarks/time_budget.py --budgets {' '.join(f'{b:g}' for b in args.budgets)}`",
        "",
        "| budget s | wall s | over budget | test accuracy | preset | widths | epochs | held out | before fit s "
        "| fit s | after fit s | load avg before/after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        timings = row["timings"]
        lines.append(
            f"| {row['budget']:g} | {row['wall']:.1f} | {100 * (row['wall'] / row['budget'] - 1):+.1f}% "
            f"| {row['accuracy']:.4f} | {row['preset']} | {row['widths'] or 'default'} | {row['epochs']} "
            f"| {row['num_val']} | {timings.get('before_fit', '')} | {timings.get('fit', '')} "
            f"| {timings.get('after_fit', '')} | {row['load'][0]:.1f} / {row['load'][1]:.1f} |")
    lines += ["", "before fit = from the start of the command to the first batch (imports, scan, decoding, "
              "building the model); after fit = calibration; the save and the run record follow it and are "
              "in the wall time."]
    write_results(f"time-budget-{stamp}{args.tag}", lines)


if __name__ == "__main__":
    sys.exit(main())
