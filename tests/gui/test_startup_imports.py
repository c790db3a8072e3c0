"""The window paints before matplotlib, numpy, Pillow or TensorFlow are imported.

Importing them is what made the window late (about 1.4 s of 1.9 s on a 2-core machine,
benchmarks/startup_window.py). A fresh interpreter runs the real ``app.main()``
offscreen; when the window has painted for the first time, the callback that would start
the engine and the scan records which libraries are loaded and exits. No time is asserted
here: the benchmark measures the speed, this test keeps the imports from creeping back.
"""

import json
import os
import subprocess
import sys
import textwrap

# Not before the first paint: each costs 0.1-0.6 s to import (TensorFlow several seconds).
DEFERRED = ("matplotlib", "numpy", "PIL", "tensorflow", "keras", "h5py", "scipy", "onnx", "tf2onnx")

SCRIPT = textwrap.dedent("""
    import json, os, sys

    from imgcls_desktop import app

    def report(window, callback, **kwargs):
        def at_first_paint():
            loaded = sorted({name.split(".")[0] for name in sys.modules})
            print("MODULES " + json.dumps({"loaded": loaded, "title": window.windowTitle()}), flush=True)
            os._exit(0)
        real_call_after_first_paint(window, at_first_paint, **kwargs)

    real_call_after_first_paint = app.call_after_first_paint
    app.call_after_first_paint = report
    app.main([])
    print("the event loop ended without a paint", flush=True)
    sys.exit(1)
""")


def test_nothing_heavy_is_imported_before_the_window_paints(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", IMGCLS_DATA_DIR=str(tmp_path))
    for name in ("IMGCLS_STARTUP_PROBE", "IMGCLS_STARTUP_MARKS"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("MODULES ")]
    assert lines, f"no report (exit {result.returncode}):\n{result.stdout}\n{result.stderr[-3000:]}"
    report = json.loads(lines[0].removeprefix("MODULES "))
    assert report["title"].startswith("imgcls")  # the real window, built and shown
    assert "PySide6" in report["loaded"] and "imgcls_desktop" in report["loaded"]
    early = [name for name in DEFERRED if name in report["loaded"]]
    assert not early, f"imported before the window's first paint: {early}"
