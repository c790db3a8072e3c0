"""How long until the window is visible, and how long the event loop ever stalls.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_responsiveness.py [--dataset DIR] [--epochs N]

A QTimer fires every 10 ms in the GUI thread; the longest gap between two ticks, less the
interval, is the longest stall a user would feel (a frozen window). It is recorded in
four phases: while the engine process starts and imports TensorFlow behind the visible
window, while the dataset is scanned, while training runs in the engine (driven by the
training panel's QThread, the live chart redrawing), and at the end of training (the
saved model adopted, evaluated in the engine, the report shown). The window's process
never imports TensorFlow; the script checks it. Writes a Markdown table to
benchmarks/results/, with the machine, its vector ISA and the load average.
"""

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


class StallBlame:
    """``--blame``: a thread that, while the GUI thread has not ticked for ``after_ms``, samples
    every thread's Python stack every 5 ms, so a stall names the code that ran (or held the GIL)."""

    def __init__(self, probe, after_ms=50):
        import threading

        self.probe, self.after = probe, after_ms / 1000
        self.samples = []  # (seconds since the probe's start, {thread name: innermost frames})
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stall-blame", daemon=True)
        self.thread.start()

    def _run(self):
        import threading
        import traceback

        names = {}
        while not self.stopped.wait(0.005):
            last = self.probe.last
            if last is None or not self.probe.timer.isActive() or time.perf_counter() - last < self.after:
                continue
            names.update({t.ident: t.name for t in threading.enumerate()})
            stacks = {}
            for ident, frame in sys._current_frames().items():
                if ident == threading.get_ident():
                    continue
                frames = traceback.extract_stack(frame)[-6 if names.get(ident) != "MainThread" else -40:]
                stacks[names.get(ident, str(ident))] = " <- ".join(
                    f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
            self.samples.append((last - self.probe.started, stacks))

    def report(self):
        self.stopped.set()
        from collections import Counter

        counts = Counter((thread, stack) for _at, stacks in self.samples for thread, stack in stacks.items())
        lines = [f"{len(self.samples)} samples taken during stalls (5 ms apart); most frequent stacks:"]
        lines += [f"  {n:4d}  [{thread}] {stack}" for (thread, stack), n in counts.most_common(12)]
        return "\n".join(lines)


class StallProbe:
    def __init__(self, interval_ms=10):
        from PySide6.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.gaps = []
        self.last = None
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)

    def start(self):
        self.gaps = []
        self.started = self.last = time.perf_counter()
        self.worst_at = 0.0
        self.timer.start()

    def tick(self):
        now = time.perf_counter()
        gap = max(0.0, now - self.last - self.interval)
        if not self.gaps or gap > max(self.gaps):
            self.worst_at = self.last - self.started
        self.gaps.append(gap)
        self.last = now

    def stop(self):
        self.timer.stop()
        gaps = sorted(self.gaps) or [0.0]
        return {
            "max_ms": gaps[-1] * 1000,
            "p99_ms": gaps[int(0.99 * (len(gaps) - 1))] * 1000,
            "median_ms": statistics.median(gaps) * 1000,
            "ticks": len(gaps),
            "worst_at_s": self.worst_at,
        }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", help="dataset folder (default: the bundled sample)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--preset", default=None, help="preset to train (default: the app's default)")
    parser.add_argument("--blame", action="store_true",
                        help="sample every thread's stack during stalls over 50 ms and print the commonest")
    args = parser.parse_args()
    os.environ.setdefault("IMGCLS_DATA_DIR", str(Path.home() / ".cache" / "imgcls-desktop" / "bench-userdata"))

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from imgcls_desktop.core.training import TrainingConfig
    from imgcls_desktop.gui.main_window import MainWindow
    from imgcls_desktop.gui.self_test import wait_for
    from imgcls_desktop.resources import sample_dataset_path

    app = QApplication(sys.argv[:1])
    from imgcls_desktop.gui.garbage import GarbageCollector

    collector = GarbageCollector(app)  # noqa: F841 (as app.main installs it)
    assert collector
    window = MainWindow()
    window.show()
    visible = {}
    QTimer.singleShot(0, lambda: visible.setdefault("s", time.perf_counter() - PROCESS_START))
    app.processEvents()
    try:  # as app.main does once the window has painted: matplotlib loads before the first chart
        from imgcls_desktop.gui.widgets.lazy_canvas import warm_up_in_background
    except ImportError:
        pass
    else:
        warm_up_in_background()
    probe = StallProbe()
    blame = StallBlame(probe) if args.blame else None
    rows = {}

    dataset = args.dataset or sample_dataset_path()
    probe.start()
    open_dataset, window.open_dataset = window.open_dataset, lambda path: None  # one phase at a time
    window.start(dataset)
    window.open_dataset = open_dataset
    if window.versions is None:
        wait_for(window.engine_ready, 300, "engine")
    rows["engine loading (engine process starts, imports TensorFlow)"] = probe.stop()
    probe.start()
    window.open_dataset(dataset)
    wait_for(window.dataset_opened, 600, "dataset scan")
    rows["dataset scan (and thumbnails, recommendation)"] = probe.stop()

    window.tabs.setCurrentIndex(1)
    from imgcls_desktop.core.models import DEFAULT_PRESET

    preset = args.preset or DEFAULT_PRESET
    window.training.set_config(TrainingConfig(preset=preset, epochs=args.epochs, seed=1))
    probe.start()
    started = time.perf_counter()
    window.training.start_training()
    wait_for(window.training.training_succeeded, 3600, "training")
    training_seconds = time.perf_counter() - started
    rows["training (engine process; QThread + live chart)"] = probe.stop()
    probe.start()
    window._confirm_close_during_training = lambda: True
    wait_for(window.evaluation_finished, 600, "evaluation")
    rows["end of training (adopt the saved model, evaluate, show the report)"] = probe.stop()
    window_has_tensorflow = "tensorflow" in sys.modules or "keras" in sys.modules
    load = os.getloadavg()
    window.close()

    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    from benchmarks.machine import machine_description

    lines = [
        "# GUI responsiveness",
        "",
        f"- Date: {stamp}",
        f"- Machine: {machine_description()}; Qt platform: {app.platformName()}",
        f"- Dataset: {'the bundled sample' if not args.dataset else Path(args.dataset).name} "
        f"({window.scan.num_images} images); training: {preset}, "
        f"{args.epochs} epochs, {training_seconds:.1f} s",
        f"- Window visible {visible.get('s', float('nan')):.2f} s after the interpreter started "
        "(imports of PySide6 and the GUI modules included; TensorFlow loads afterwards)",
        "- Stall = gap between two ticks of a 10 ms QTimer, less 10 ms",
        f"- TensorFlow runs in the engine process; imported in the window's process: "
        f"{'YES (a bug)' if window_has_tensorflow else 'no'}",
        f"- Load average at the end (1, 5, 15 min): {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; "
        f"{os.cpu_count()} logical CPUs",
        "",
        "| phase | longest stall (ms) | at (s into the phase) | 99th percentile (ms) | median (ms) | ticks |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['max_ms']:.0f} | {row['worst_at_s']:.1f} | {row['p99_ms']:.0f} "
                     f"| {row['median_ms']:.1f} | {row['ticks']} |")
    text = "\n".join(lines) + "\n"
    out = HERE / "results" / f"gui-responsiveness-{datetime.date.today().isoformat()}.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}")
    if blame is not None:
        print(blame.report())


if __name__ == "__main__":
    main()
