"""The engine process and its protocol, without Qt: plain data only, crashes, restarts, shutdown."""

import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from imgcls_desktop.engine import launch_command, plain, protocol
from imgcls_desktop.engine.client import EngineClient, EngineCrashed, crash_message
from imgcls_desktop.engine.tasks import TASKS


def test_only_plain_data_crosses():
    message = {"a": [1, 2.5, "x", None, (True, b"raw")], "array": np.arange(6, dtype=np.float32).reshape(2, 3),
               "scalar": np.float32(0.5), "set": {1, 2}}
    back = protocol.loads(protocol.dumps(message))
    assert back["a"] == message["a"] and back["set"] == {1, 2} and back["scalar"] == 0.5
    np.testing.assert_array_equal(back["array"], message["array"])
    with pytest.raises(protocol.ProtocolError, match="only plain data"):
        protocol.loads(pickle.dumps(Path("/tmp")))
    with pytest.raises(protocol.ProtocolError):
        protocol.loads(pickle.dumps(subprocess.Popen))  # a class that could run code


def test_core_objects_round_trip_as_plain_data(shapes_split_dataset):
    from imgcls_desktop.core.dataset import scan_dataset
    from imgcls_desktop.core.training import TrainingProgress

    scan = scan_dataset(shapes_split_dataset)
    progress = TrainingProgress(kind="batch", epoch=1, step=2, steps=3, metrics={"loss": 0.5})
    wire = protocol.loads(protocol.dumps(plain.encode({"scan": scan, "progress": progress})))
    back = plain.decode(wire)
    assert back["scan"] == scan and back["progress"] == progress
    assert isinstance(back["scan"].root, Path) and back["scan"].fingerprint() == scan.fingerprint()
    with pytest.raises(TypeError):
        plain.decode({"__dataclass__": "Popen", "args": "ls"})


def test_the_registry_is_fixed_and_the_launch_command_runs_the_package(monkeypatch):
    assert set(TASKS) == {"versions", "load_model", "warm_up", "predict", "evaluate", "save_model", "train",
                          "explain", "robustness", "mislabels", "export", "augmentation_preview"}
    assert launch_command() == [sys.executable, "-m", "imgcls_desktop.engine"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert launch_command() == [sys.executable, "--engine"]


@pytest.fixture
def client():
    engine = EngineClient()
    yield engine
    engine.close(30)


def test_engine_process_predicts_reports_errors_survives_a_kill_and_shuts_down(client, trained, shapes_split_dataset):
    from imgcls_desktop.core.errors import ModelFileError

    _result, model_path = trained
    files = sorted((shapes_split_dataset / "test").rglob("*.png"))[:4]
    predictions = client.call("predict", {"path": str(model_path), "paths": [str(f) for f in files]}, timeout=180)
    assert [p.path for p in predictions] == [str(f) for f in files]
    assert [p.label for p in predictions] == [f.parent.name for f in files]
    with pytest.raises(ModelFileError, match="not found"):
        client.call("load_model", {"path": "/nonexistent/model.keras"}, timeout=60)
    with pytest.raises(Exception, match="unknown engine task"):
        client.call("os.system", {"command": "true"}, timeout=60)

    first = client.pid
    client.kill()
    with pytest.raises(EngineCrashed) as crashed:
        client.call("load_model", {"path": str(model_path)}, timeout=60)
    assert str(crashed.value) == crash_message(-9)
    assert "signal 9" in str(crashed.value)
    info = client.call("load_model", {"path": str(model_path)}, timeout=180)  # a fresh engine
    assert client.pid != first and info["class_names"] == ["circle", "square", "triangle"]
    process_pid = client.pid
    assert client.close(30) and not client.is_running()
    assert not Path(f"/proc/{process_pid}").exists()


def test_cancel_stops_a_running_task(client, trained, shapes_split_dataset):
    from imgcls_desktop.core.dataset import scan_dataset
    from imgcls_desktop.core.training import TrainingConfig

    scan = scan_dataset(shapes_split_dataset)
    stop = threading.Event()
    seen = []

    def on_progress(progress):
        seen.append(progress)
        if progress.kind == "batch":
            stop.set()

    config = TrainingConfig(preset="tutorial_cnn", epochs=50, batch_size=8, seed=1, early_stopping_patience=None)
    try:
        request = {"scan": scan, "config": config.to_dict(), "autosave_folder": str(trained[1].parent)}
        answer = client.call("train", request, on_progress=on_progress, stop_event=stop, timeout=300)
    except Exception as exc:  # stopped inside epoch 1: core says no model was made yet
        assert "stop" in str(exc).lower()
    else:
        assert answer["stopped_by_user"] and answer["epochs_run"] < 50
        assert Path(answer["model"]["path"]).is_file()
    assert any(p.kind == "batch" for p in seen)
