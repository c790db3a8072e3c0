#!/usr/bin/env bash
# The GPU check of issue 14, in one short call on a machine with a GPU:
#   benchmarks/gpu_check.sh           device report, CIFAR-10 fast_cnn (150 s) and the photo
#                                     preset (efficientnet_lite0) on TrashNet (60 s), each with
#                                     mixed precision off and on: fits one 10-minute device call
#   benchmarks/gpu_check.sh --only cifar10 --cifar-seconds 300
#                                     the 5-minute CIFAR-10 figure of issue 14, both precisions
#   benchmarks/gpu_check.sh --quick   the same on tiny subsets with 15 s budgets: a proof run
#                                     that works on a CPU (~3 min on 2 cores)
# The table goes to benchmarks/results/gpu-check-[quick-]DATE.md. A GPU needs the GPU
# TensorFlow wheel (scripts/setup.sh gpu); without it the report says "GPUs seen: none".
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec "$python" benchmarks/gpu_check.py "$@"
