"""Multi-worker settings that cannot work get one line before any work (issue 14).

The live cases (a worker killed mid-run, the chief's time budget on every worker) run two
real workers in tests/test_multi_worker.py; a file gone from a streamed set is in
tests/core/test_streaming.py.
"""

import subprocess
import sys

import pytest

BAD = [
    ("", "TF_CONFIG, which is not set"),
    ("{not json", "TF_CONFIG environment variable is not valid JSON"),
    ('{"cluster": {"worker": ["host1"]}, "task": {"type": "worker", "index": 0}}', "not host:port"),
    ('{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}}', "task index 2"),
]


@pytest.mark.parametrize("tf_config, expected", BAD)
def test_a_bad_cluster_is_one_usage_line_and_nothing_is_written(tmp_path, shapes_dataset, tf_config, expected):
    out = tmp_path / "model.keras"
    env = {"PATH": "/usr/bin:/bin", "TF_CONFIG": tf_config, "IMGCLS_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "imgcls_desktop.cli", "train", str(shapes_dataset), "--out", str(out),
         "--distribute", "multi-worker", "--epochs", "1"],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("imgcls: error: ")
    assert expected in result.stderr
    assert result.stdout == "" and not out.exists() and not (tmp_path / "data").exists()
