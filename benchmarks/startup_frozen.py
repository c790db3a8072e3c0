"""Start-up to a visible window: the frozen bundle against the source checkout.

    python benchmarks/startup_frozen.py                      # both, 5 runs each, writes results/
    python benchmarks/startup_frozen.py --runs 9 --frozen dist/imgcls-desktop/imgcls-desktop \
        --source .venv/bin/imgcls-desktop

Each run launches the command with ``IMGCLS_STARTUP_PROBE=1`` and ``IMGCLS_LAUNCH_TIME`` (the
launcher's ``time.time()`` just before it starts the process). The app prints
``window-visible <seconds since launch>`` after ``window.show()`` and the first turn of the
event loop, then exits at once (app.py, frozen.schedule_startup_probe). The engine
(TensorFlow) keeps loading behind the window in a normal start; it is not part of this figure.

Runs alternate between the commands so that neither gets a warmer machine; one unmeasured
warm-up run per command comes first (the first start after a build reads a gigabyte from
disk; that cold figure is reported separately). Without a display, Qt runs offscreen.
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_description  # same folder: run as a script

ROOT = Path(__file__).resolve().parents[1]


def launch_once(command, data_dir, timeout_s):
    """(seconds reported by the app, seconds until the launcher read the line)."""
    env = dict(os.environ, IMGCLS_STARTUP_PROBE="1", IMGCLS_DATA_DIR=str(data_dir))
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    env.pop("PYTHONPATH", None)
    started = time.time()
    env["IMGCLS_LAUNCH_TIME"] = repr(started)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, cwd=tempfile.gettempdir())
    try:
        for line in process.stdout:
            if line.startswith("window-visible "):
                seen = time.time() - started
                process.wait(timeout=timeout_s)
                return float(line.split()[1]), seen
        raise RuntimeError(f"{command[0]} exited ({process.wait()}) without printing window-visible")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frozen", default=str(ROOT / "dist" / "imgcls-desktop" / "imgcls-desktop"))
    parser.add_argument("--source", default=str(ROOT / ".venv" / "bin" / "imgcls-desktop"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--out", type=Path, help="markdown file (default: results/startup-<date>.md)")
    args = parser.parse_args(argv)

    commands = {"frozen": [args.frozen], "source": [args.source]}
    load_before = os.getloadavg()[0]
    samples = {name: [] for name in commands}
    cold = {}
    with tempfile.TemporaryDirectory(prefix="imgcls-startup-") as scratch:
        for name, command in commands.items():  # warm-up, kept apart as the cold figure
            cold[name] = launch_once(command, Path(scratch) / name, args.timeout)
            print(f"{name:6s} warm-up: window visible after {cold[name][0]:.2f} s", flush=True)
        for run in range(args.runs):
            for name, command in commands.items():
                reported, seen = launch_once(command, Path(scratch) / name, args.timeout)
                samples[name].append((reported, seen))
                print(f"{name:6s} run {run + 1}: {reported:.2f} s (launcher saw it at {seen:.2f} s)",
                      flush=True)

    load_after = os.getloadavg()[0]
    today = datetime.date.today().isoformat()
    rows = []
    for name, command in commands.items():
        reported = [r for r, _ in samples[name]]
        program = Path(command[0]).relative_to(ROOT) if Path(command[0]).is_relative_to(ROOT) else command[0]
        rows.append(f"| {name} | `{program}` "
                    f"| {statistics.median(reported):.2f} | {min(reported):.2f} | {max(reported):.2f} "
                    f"| {cold[name][0]:.2f} |")
    frozen_median = statistics.median(r for r, _ in samples["frozen"])
    source_median = statistics.median(r for r, _ in samples["source"])
    headless = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    text = "\n".join([
        f"# Start-up to a visible window, {today}",
        "",
        f"Machine: {machine_description()}, Python {platform.python_version()}. Qt platform: "
        f"{'offscreen (no display)' if headless else 'display'}. "
        f"Load average (1 min) before/after: {load_before:.2f}/{load_after:.2f} (the cores are shared).",
        "",
        f"`python benchmarks/startup_frozen.py --runs {args.runs}`: seconds from process launch "
        "(launcher's clock, `IMGCLS_LAUNCH_TIME`) to the first event-loop turn after "
        "`window.show()`; TensorFlow still loads behind the window. Runs alternate; the first "
        "(warm-up) run of each is reported apart as \"first run\".",
        "",
        f"| build | command | median of {args.runs} (s) | min (s) | max (s) | first run (s) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Frozen / source (medians): {frozen_median / source_median:.2f}x "
        f"({frozen_median - source_median:+.2f} s).",
        "",
    ])
    out = args.out or ROOT / "benchmarks" / "results" / f"startup-{today}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
