"""The GPU check of issue 14: device report, CIFAR-10 fast_cnn and the photo preset on
TrashNet, each with mixed precision off and on. Run through ``benchmarks/gpu_check.sh``.

Every run is a child process (the precision policy and the strategy are per process),
trains through the app's own ``core.training.train`` with ``--distribute auto`` (all
local GPUs, mirrored when there are several), and reports test accuracy and training
images/s. ``--quick`` shrinks everything to a couple of minutes on a CPU, to prove the
script works before a GPU machine is lent.
"""

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

# Sized for one 10-minute call of the device tool: 2 x 150 s + 2 x 60 s of training, plus
# start-ups and decoding. The 5-minute CIFAR-10 figure: --cifar-seconds 300.
FULL = {"cifar10": {"preset": "fast_cnn", "budget": 150, "train_per_class": 0, "test_per_class": 0},
        "trashnet": {"preset": "efficientnet_lite0", "budget": 60, "train_per_class": 0,
                     "test_per_class": 0}}
QUICK = {"cifar10": {"preset": "fast_cnn", "budget": 15, "train_per_class": 60, "test_per_class": 30},
         "trashnet": {"preset": "efficientnet_lite0", "budget": 15, "train_per_class": 8,
                      "test_per_class": 5, "image_size": 224}}


def _limited(items, per_class):
    from benchmarks.machine import limited_per_class

    return limited_per_class(items, per_class)


def device_report():
    """What this machine trains on: nvidia-smi's line per GPU, TensorFlow's view, our sentence."""
    lines = []
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        lines += [f"nvidia-smi: {line}" for line in smi.stdout.strip().splitlines()] or ["nvidia-smi: no GPU"]
    except (OSError, subprocess.TimeoutExpired):
        lines.append("nvidia-smi: not installed")
    from imgcls_desktop.core.backend import tensorflow_module
    from imgcls_desktop.core.distribute import _gpu_details, machine_sentence

    tf = tensorflow_module()
    build = tf.sysconfig.get_build_info()
    lines.append(f"TensorFlow {tf.__version__}, built with CUDA {build.get('cuda_version', '-')}, "
                 f"cuDNN {build.get('cudnn_version', '-')}; GPUs seen: {_gpu_details() or 'none'}")
    lines.append(f"imgcls trains on: {machine_sentence()}")
    return lines


def child(spec):
    """One run in this process; prints one RESULT line."""
    from benchmarks.machine import cifar10_root, trashnet_root

    from imgcls_desktop.core.dataset import ImageItem, scan_dataset
    from imgcls_desktop.core.distribute import plan_for
    from imgcls_desktop.core.evaluation import evaluate_items
    from imgcls_desktop.core.model_io import from_training
    from imgcls_desktop.core.training import TrainingConfig, train

    root = cifar10_root() if spec["dataset"] == "cifar10" else trashnet_root()
    scan = scan_dataset(root, validate=False, find_duplicates=False)
    scan.splits["train"] = _limited(scan.splits["train"], spec["train_per_class"])
    test_items = [ImageItem(item.path, item.label) for item in _limited(scan.splits["test"], spec["test_per_class"])]
    plan = plan_for("auto")
    started = time.perf_counter()
    result = train(scan, TrainingConfig(preset=spec["preset"], time_budget=spec["budget"], seed=1,
                                        validation_split=0.05, image_size=spec.get("image_size")))
    meta = result.metadata["training"]
    report = evaluate_items(from_training(result), test_items, scan.class_names)
    row = dict(spec, devices=plan.sentence, policy=plan.policy, test_accuracy=report.accuracy,
               images_per_second=meta["images_seen"] / max(1e-6, meta["fit_seconds"]),
               epochs=meta["epochs_run"], num_train=meta["num_train_images"], num_test=len(test_items),
               wall_seconds=time.perf_counter() - started,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT " + json.dumps(row), flush=True)


def _run_child(spec, timeout):
    env = dict(os.environ, IMGCLS_MIXED_PRECISION=spec["mixed"])
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], stdout=subprocess.PIPE,
                          text=True, cwd=ROOT, env=env, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return dict(spec, error=f"exit status {done.returncode}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny subsets and 15 s budgets (a CPU check)")
    parser.add_argument("--cifar-seconds", type=float, help="CIFAR-10 training budget per run")
    parser.add_argument("--trashnet-seconds", type=float, help="TrashNet training budget per run")
    parser.add_argument("--only", choices=sorted(FULL), help="run one dataset only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    from benchmarks.machine import cifar10_root, machine_description, trashnet_root, write_results

    cifar10_root(), trashnet_root()  # unpack once, before any timing
    jobs = {name: dict(job) for name, job in (QUICK if args.quick else FULL).items()
            if args.only in (None, name)}
    for name, seconds in (("cifar10", args.cifar_seconds), ("trashnet", args.trashnet_seconds)):
        if seconds and name in jobs:
            jobs[name]["budget"] = seconds
    lines = ["# GPU check" + (" (--quick, a CPU proof run)" if args.quick else ""), "",
             f"{datetime.date.today()}, {machine_description()}", ""]
    lines += [f"- {line}" for line in device_report()] + [""]
    lines += ["| dataset | preset | mixed precision | policy | budget s | train images | test accuracy "
              "| images/s | epochs | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for dataset, job in jobs.items():
        for mixed in ("off", "on"):
            spec = dict(job, dataset=dataset, mixed=mixed)
            print(f"running {dataset} {job['preset']} mixed={mixed} ...", flush=True)
            row = _run_child(spec, timeout=job["budget"] * 4 + 600)
            if "error" in row:
                lines.append(f"| {dataset} | {job['preset']} | {mixed} | - | {job['budget']} | - | "
                             f"failed: {row['error']} | - | - | - |")
                continue
            lines.append(f"| {dataset} | {job['preset']} | {mixed} | {row['policy']} | {job['budget']} | "
                         f"{row['num_train']} | {row['test_accuracy']:.3f} ({row['num_test']}) | "
                         f"{row['images_per_second']:.0f} | {row['epochs']} | {row['peak_rss_mb']:.0f} |")
    stem = f"gpu-check-{'quick-' if args.quick else ''}{datetime.date.today()}"
    write_results(stem, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
