"""Start-up as the user sees it: process start to a mapped (and painted) window, on Xvfb.

    python benchmarks/startup_window.py                  # 1 cold + 5 warm launches, writes results/
    python benchmarks/startup_window.py --warm 9 --command dist/imgcls-desktop/imgcls-desktop

Each launch starts ``imgcls-desktop`` (no argument: a fresh data folder, so it opens the
bundled sample as a new user's first start does) on a private Xvfb server. The clock is
this script's: ``time.time()`` is taken right before ``Popen``, and

- **mapped** is when the X server tells this script (a second X client listening for
  ``MapNotify`` on the root window, through libX11 and ctypes) that a top-level window
  (not a tooltip or menu: ``override_redirect`` unset) was mapped; the Xvfb is private to
  this script, so that window is the app's: the moment the window exists on the screen;
- **painted** is the app's own mark at the first paint event of the main window
  (``IMGCLS_STARTUP_MARKS=1``; the app reads the launch time from ``IMGCLS_LAUNCH_TIME``),
  and **responsive** its mark when the event loop is next free after that paint.

The app also marks its start-up steps (``main`` entered, ``QApplication`` made, window
module imported, window constructed, shown, ``start()`` returned); the table gives their
medians, which say where the time goes. The app is killed once it has painted: the engine
(TensorFlow) loading behind the window is not part of this figure.

The cold launch comes first, after the files a start reads (the venv, the Python install,
the project) are evicted from the page cache with ``posix_fadvise(DONTNEED)``; only those
files, so other work on the machine keeps its cache (``--no-evict``: cold is just the
first launch). Then the warm launches; the figure is their median. The app runs without
``PYTHONDONTWRITEBYTECODE``, as a user's does: the cold launch may write the bytecode
cache of the project's modules, the warm ones read it.
"""

import argparse
import ctypes
import ctypes.util
import datetime
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_description  # same folder: run as a script

ROOT = Path(__file__).resolve().parents[1]
MARKS = ("main", "qapplication", "imports", "constructed", "shown", "started", "first-paint", "painted")

MAP_NOTIFY = 19
SUBSTRUCTURE_NOTIFY_MASK = 1 << 19


class XMapEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("event", ctypes.c_ulong), ("window", ctypes.c_ulong),
                ("override_redirect", ctypes.c_int)]


class XEvent(ctypes.Union):
    _fields_ = [("type", ctypes.c_int), ("xmap", XMapEvent), ("pad", ctypes.c_long * 24)]


class X11Watcher:
    """A second client on the display that hears every top-level window being mapped."""

    def __init__(self, display_name):
        self.lib = lib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
        lib.XOpenDisplay.restype = ctypes.c_void_p
        lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
        lib.XDefaultRootWindow.restype = ctypes.c_ulong
        lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        lib.XSelectInput.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_long]
        lib.XConnectionNumber.argtypes = [ctypes.c_void_p]
        lib.XPending.argtypes = [ctypes.c_void_p]
        lib.XNextEvent.argtypes = [ctypes.c_void_p, ctypes.POINTER(XEvent)]
        lib.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.display = lib.XOpenDisplay(display_name.encode())
        if not self.display:
            raise SystemExit(f"cannot open X display {display_name}")
        lib.XSelectInput(self.display, lib.XDefaultRootWindow(self.display), SUBSTRUCTURE_NOTIFY_MASK)
        lib.XSync(self.display, 0)
        self.fd = lib.XConnectionNumber(self.display)

    def mapped_windows(self):
        """Top-level windows mapped since the last call (reads only what is pending)."""
        windows = []
        event = XEvent()
        while self.lib.XPending(self.display):
            self.lib.XNextEvent(self.display, ctypes.byref(event))
            if event.type == MAP_NOTIFY and not event.xmap.override_redirect:
                windows.append(event.xmap.window)
        return windows


def start_xvfb():
    """A private Xvfb; returns (process, ':N') once it accepts clients."""
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x860x24",
                                "-nolisten", "tcp"], pass_fds=(write_fd,),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        raise SystemExit("Xvfb did not start (apt-get install xvfb)")
    return process, f":{number}"


def evict_from_page_cache(folders):
    """posix_fadvise(DONTNEED) on every file below ``folders``: the next read is from disk."""
    count = size = 0
    for folder in folders:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    count += 1
                    size += os.fstat(fd).st_size
                except OSError:
                    pass
                finally:
                    os.close(fd)
    return count, size


def launch_once(command, display, watcher, data_dir, timeout_s, source=None):
    """One launch: {"mapped": s, mark: s, ...} on this script's clock."""
    env = dict(os.environ, DISPLAY=display, IMGCLS_STARTUP_MARKS="1", IMGCLS_DATA_DIR=str(data_dir))
    # PYTHONDONTWRITEBYTECODE (set in some shells and CI) would make every launch compile
    # the app's modules again; a user's Python caches the bytecode after the first start.
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "IMGCLS_STARTUP_PROBE", "PYTHONPATH",
                 "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    if source:
        env["PYTHONPATH"] = str(source)  # ahead of the venv's editable install
    watcher.mapped_windows()  # drop anything left from the last launch
    started = time.time()
    env["IMGCLS_LAUNCH_TIME"] = repr(started)
    # A session of its own: the kill below ends the app and what it started (the engine
    # process loading TensorFlow), so no launch runs beside the next one.
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               cwd=tempfile.gettempdir(), start_new_session=True)
    times, buffer = {}, b""
    try:
        while "mapped" not in times or "painted" not in times:
            left = started + timeout_s - time.time()
            if left <= 0:
                raise RuntimeError(f"no mapped and painted window after {timeout_s} s: {times}")
            ready, _, _ = select.select([watcher.fd, process.stdout], [], [], left)
            now = time.time()
            if watcher.fd in ready or watcher.lib.XPending(watcher.display):
                if watcher.mapped_windows():
                    times.setdefault("mapped", now - started)
            if process.stdout in ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    if "mapped" in times and "painted" in times:
                        break
                    raise RuntimeError(f"{command[0]} exited ({process.wait()}) before its window showed")
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    parts = line.decode(errors="replace").split()
                    if len(parts) == 3 and parts[0] == "startup-mark":
                        times.setdefault(parts[1], float(parts[2]))
        return times
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        time.sleep(0.5)  # let the killed processes' memory and CPU go before the next launch


def fmt(values):
    return f"{statistics.median(values):.2f}" if values else "–"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", default=str(ROOT / ".venv" / "bin" / "imgcls-desktop"))
    parser.add_argument("--warm", type=int, default=5, help="warm launches after the cold one")
    parser.add_argument("--no-evict", action="store_true", help="cold = first launch, page cache untouched")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--source", type=Path,
                        help="import imgcls_desktop from this folder (an older revision: "
                             "git archive REV imgcls_desktop | tar -x -C FOLDER)")
    parser.add_argument("--label", default="", help="a note for the table's heading (e.g. 'before')")
    parser.add_argument("--out", type=Path, help="markdown file (default: results/startup-<date>.md)")
    args = parser.parse_args(argv)
    command = [args.command]

    xvfb, display = start_xvfb()
    load_before = os.getloadavg()
    runs = []
    try:
        watcher = X11Watcher(display)
        with tempfile.TemporaryDirectory(prefix="imgcls-startup-") as scratch:
            if not args.no_evict:
                folders = {sys.base_prefix, str(ROOT / ".venv"), str(ROOT / "imgcls_desktop"),
                           str(Path(args.command).resolve().parent)} | ({str(args.source)} if args.source else set())
                count, size = evict_from_page_cache(sorted(folders))
                print(f"evicted {count} files ({size / 1e6:.0f} MB) from the page cache", flush=True)
            for run in range(args.warm + 1):
                # A fresh data folder each time: no settings, so the sample opens, as on a first start.
                times = launch_once(command, display, watcher, Path(scratch) / f"run{run}", args.timeout,
                                    args.source)
                runs.append(times)
                steps = " ".join(f"{name} {times[name]:.2f}" for name in MARKS if name in times)
                print(f"{'cold' if run == 0 else f'warm {run}'}: mapped {times['mapped']:.2f} s "
                      f"({steps})", flush=True)
    finally:
        xvfb.kill()
        xvfb.wait()
    load_after = os.getloadavg()

    cold, warm = runs[0], runs[1:]
    today = datetime.date.today().isoformat()
    shown = Path(args.command)
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    steps = [("mapped (X server)", "mapped"), ("first paint", "first-paint"), ("painted, event loop free", "painted")]
    rows = [f"| {label} | {fmt([r[key] for r in warm if key in r])} | "
            f"{min(r[key] for r in warm):.2f}-{max(r[key] for r in warm):.2f} | {cold.get(key, float('nan')):.2f} |"
            for label, key in steps]
    step_rows = []
    previous = 0.0
    medians = {name: statistics.median([r[name] for r in warm if name in r])
               for name in MARKS if any(name in r for r in warm)}
    medians["mapped (X server)"] = statistics.median(r["mapped"] for r in warm)
    for name, median in sorted(medians.items(), key=lambda item: item[1]):
        step_rows.append(f"| {name} | {median:.2f} | {median - previous:+.2f} |")
        previous = median
    text = "\n".join([
        f"# Start-up to a mapped window{f' ({args.label})' if args.label else ''}, {today}",
        "",
        f"Machine: {machine_description()}, Python {platform.python_version()}. Xvfb {display} "
        f"(1280x860x24, no window manager). Load average (1/5 min) before: {load_before[0]:.2f}/"
        f"{load_before[1]:.2f}, after: {load_after[0]:.2f}/{load_after[1]:.2f} (2 cores, shared).",
        "",
        f"`python benchmarks/startup_window.py --warm {args.warm}"
        f"{f' --source {args.source}' if args.source else ''}` on `{shown}` (no argument: "
        "the bundled sample opens). Seconds from `time.time()` right before `Popen` to the X "
        "server's `MapNotify` for the window (heard by the benchmark), and to the app's first "
        "paint of it. Cold: the first launch, "
        + ("with the page cache as it was." if args.no_evict else
           "after the venv, the Python install and the project were evicted from the page cache.")
        + f" Warm: the median of the {args.warm} launches after it. Python's bytecode cache "
        "on, as for a user (`PYTHONDONTWRITEBYTECODE` unset).",
        "",
        f"| to | warm median of {args.warm} (s) | warm range (s) | cold (s) |",
        "|---|---|---|---|",
        *rows,
        "",
        "Where the warm time goes (the app's marks, medians; each step's cost is the difference "
        "to the one before):",
        "",
        "| mark | at (s) | step (s) |",
        "|---|---|---|",
        *step_rows,
        "",
        "`main`: the interpreter started and `imgcls_desktop.app` imported; `qapplication`: "
        "logging, `QApplication`, exception hooks; `imports`: `gui.main_window` and what it "
        "imports; `constructed`: `MainWindow()`; `shown`: `show()` returned; `first-paint`: "
        "the window's first paint event; `started`: `start()` returned (the engine process "
        "and the scan handed to the background); `painted`: the event loop's next free turn "
        "after the first paint.",
        "",
    ])
    out = args.out or ROOT / "benchmarks" / "results" / f"startup-{today}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and args.out is None:
        text = out.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + text
    out.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
