"""core.distribute: strategy choice, TF_CONFIG, chief, batch and precision rules (issue 14)."""

import json
import socket
import threading
import time

import numpy as np
import pytest

from imgcls_desktop.core import distribute
from imgcls_desktop.core.errors import TrainingError


def tf_config(workers=2, index=0, task_type="worker", chief=False):
    cluster = {"worker": [f"127.0.0.1:{2000 + i}" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["127.0.0.1:1999"]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def test_auto_mirrors_only_with_several_gpus():
    assert distribute.choose_kind("auto", 0, None) == "default"
    assert distribute.choose_kind("auto", 1, None) == "default"
    assert distribute.choose_kind("auto", 2, None) == "mirrored"
    assert distribute.choose_kind("off", 8, None) == "default"
    assert distribute.choose_kind("mirrored", 0, None) == "mirrored"


def test_multi_worker_without_tf_config_says_how_to_set_it():
    with pytest.raises(TrainingError, match="TF_CONFIG, which is not set.*index"):
        distribute.choose_kind("multi-worker", 0, None)
    with pytest.raises(TrainingError, match="Unknown --distribute 'ring'"):
        distribute.choose_kind("ring", 0, None)


def test_worker_zero_is_the_chief_unless_a_chief_task_exists():
    assert distribute.read_tf_config(tf_config(index=0)).is_chief
    assert not distribute.read_tf_config(tf_config(index=1)).is_chief
    assert not distribute.read_tf_config(tf_config(index=0, chief=True)).is_chief
    chief = distribute.read_tf_config(tf_config(index=0, task_type="chief", chief=True))
    assert chief.is_chief and chief.me == "127.0.0.1:1999"
    assert chief.peers == ("127.0.0.1:2000", "127.0.0.1:2001")
    worker = distribute.read_tf_config(tf_config(index=1))
    assert worker.me == "127.0.0.1:2001" and worker.peers == ("127.0.0.1:2000",)
    assert distribute.read_tf_config("") is None and distribute.read_tf_config(None) is None


@pytest.mark.parametrize("text, expected", [
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', 'needs a "cluster" and a "task"'),
    ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}', "not host:port"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "task index 3"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', '"task" must be'),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "lists no worker"),
])
def test_bad_tf_config_is_one_clear_error(text, expected):
    with pytest.raises(TrainingError, match="TF_CONFIG") as info:
        distribute.read_tf_config(text)
    assert expected in str(info.value)


def test_mixed_precision_only_on_gpus_that_are_fast_at_float16():
    assert distribute.precision_policy([]) == "float32"  # CPU stays float32
    assert distribute.precision_policy([(8, 0), (8, 0)]) == "mixed_float16"
    assert distribute.precision_policy([(7, 0)]) == "mixed_float16"
    assert distribute.precision_policy([(6, 1)]) == "float32"  # Pascal: float16 is slow
    assert distribute.precision_policy([(8, 0), (6, 1)]) == "float32"  # all or none
    assert distribute.precision_policy([None]) == "float32"  # unknown: the safe choice
    assert distribute.precision_policy([(8, 0)], "off") == "float32"  # IMGCLS_MIXED_PRECISION
    assert distribute.precision_policy([], "on") == "mixed_float16"  # measuring on a CPU
    assert distribute.precision_policy([], "bf16") == "mixed_bfloat16"  # measuring AVX512_BF16 / AMX
    assert distribute.precision_policy([(8, 0)], "bf16") == "mixed_bfloat16"


def test_devices_sentence():
    assert distribute.devices_sentence(0, 2) == "CPU, 2 cores"
    assert distribute.devices_sentence(0, 1) == "CPU, 1 core"
    assert distribute.devices_sentence(2, 16, "mixed_float16") == "2 GPUs, mixed precision"
    assert distribute.devices_sentence(1, 16) == "1 GPU"
    assert distribute.devices_sentence(0, 2, "mixed_bfloat16") == "CPU, 2 cores, bfloat16"
    assert distribute.devices_sentence(1, 16, "mixed_float16", workers=3) == \
        "3 machines: 1 GPU, mixed precision each"


def test_global_batch_and_learning_rate_scale():
    assert distribute.global_batch(32, 4) == 128
    assert distribute.learning_rate_scale(4) == pytest.approx(2.0)
    assert distribute.learning_rate_scale(1) == 1.0


def test_this_machine_trains_on_its_cpu_in_float32():
    plan = distribute.plan_for("auto")
    assert plan.kind == "default" and plan.policy == "float32" and plan.is_chief
    assert plan.sentence == distribute.machine_sentence()
    assert plan.sentence.startswith("CPU, ")


def test_the_last_layers_compute_in_float32_under_mixed_precision():
    from imgcls_desktop.core.backend import keras_module
    from imgcls_desktop.core.models import build_model, get_preset

    keras = keras_module()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(get_preset("tutorial_cnn"), 3, 32)
        distribute.keras_float32_head(model)
        out = model(np.zeros((2, 32, 32, 3), np.float32), training=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("logits").compute_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    assert out.dtype.name == "float32"
    assert any(layer.compute_dtype == "float16" for layer in model.layers)  # the body runs in float16


def test_training_under_a_mirrored_strategy_learns(shapes_dataset):
    from imgcls_desktop.core.training import TrainingConfig, train

    config = TrainingConfig(preset="small_cnn", epochs=6, batch_size=16, learning_rate=0.05, seed=3,
                            distribute="mirrored", class_weights="balanced")
    result = train(shapes_dataset, config)
    assert result.best_val_accuracy >= 0.7
    assert result.metadata["training"]["config"]["distribute"] == "mirrored"
    assert result.model.distribute_strategy is not None


def _listening():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, f"127.0.0.1:{server.getsockname()[1]}"


def test_peer_watch_reports_a_peer_that_went_away_while_training():
    server, address = _listening()
    cluster = distribute.Cluster(("127.0.0.1:1", address), "worker", 0)
    lost = []
    watch = distribute.PeerWatch(cluster, lost.append, interval=0.05, misses=2).start()
    try:
        time.sleep(0.3)
        assert lost == []
        server.close()
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watch.stop()
    assert len(lost) == 1 and address in lost[0] and "stopped answering" in lost[0]


def test_peer_watch_forgives_a_peer_that_finished_outside_fit():
    server, address = _listening()
    cluster = distribute.Cluster(("127.0.0.1:1", address), "worker", 0)
    lost, busy = [], threading.Event()
    watch = distribute.PeerWatch(cluster, lost.append, busy=busy.is_set, interval=0.05, misses=2).start()
    try:
        time.sleep(0.2)
        server.close()  # it finished first: calibration and saving are not collective
        time.sleep(0.5)
    finally:
        watch.stop()
    assert lost == []


def test_peer_watch_reports_a_peer_that_never_started():
    _server, address = _listening()
    _server.close()
    cluster = distribute.Cluster(("127.0.0.1:1", address), "worker", 0)
    lost = []
    watch = distribute.PeerWatch(cluster, lost.append, interval=0.05, start_timeout=0.3).start()
    try:
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watch.stop()
    assert len(lost) == 1 and "never started" in lost[0]


def _train_at_precision(shapes_dataset, monkeypatch, override):
    """A small run with IMGCLS_MIXED_PRECISION=override; the global policy is reset after."""
    from imgcls_desktop.core.backend import keras_module
    from imgcls_desktop.core.training import TrainingConfig, train

    monkeypatch.setenv("IMGCLS_MIXED_PRECISION", override)
    monkeypatch.setattr(distribute, "_plans", {})
    try:
        return train(shapes_dataset, TrainingConfig(preset="small_cnn", epochs=6, batch_size=16,
                                                    learning_rate=0.05, seed=3, distribute="off"))
    finally:
        keras_module().mixed_precision.set_global_policy("float32")


def _saved_head_is_float32(result, path):
    from imgcls_desktop.core.model_io import load_model, save_model

    assert result.model.get_layer("probabilities").compute_dtype == "float32"
    loaded = load_model(save_model(result.model, path, result.metadata))
    assert loaded.model.get_layer("probabilities").compute_dtype == "float32"


@pytest.mark.slow  # ~85 s on 2 cores: float16 is emulated on a CPU
def test_mixed_precision_training_learns_and_saves_a_float32_head(shapes_dataset, monkeypatch, tmp_path):
    """The GPU path's precision, run on the CPU (emulated float16: slow, so a small run)."""
    result = _train_at_precision(shapes_dataset, monkeypatch, "on")
    assert distribute.plan_for("off").policy == "mixed_float16"
    assert type(result.model.optimizer).__name__ == "LossScaleOptimizer"  # the loss is scaled
    assert result.best_val_accuracy >= 0.7
    _saved_head_is_float32(result, tmp_path / "mixed.keras")


@pytest.mark.slow  # 3 s with AVX512_BF16; emulated (far slower) on CPUs without it
def test_bfloat16_training_learns_records_its_precision_and_saves_a_float32_head(shapes_dataset, monkeypatch,
                                                                                tmp_path):
    """IMGCLS_MIXED_PRECISION=bf16, the switch benchmarks/time_budget.py --env measures."""
    result = _train_at_precision(shapes_dataset, monkeypatch, "bf16")
    assert result.metadata["training"]["precision"] == "mixed_bfloat16"
    assert type(result.model.optimizer).__name__ != "LossScaleOptimizer"  # bfloat16 needs no loss scaling
    assert result.best_val_accuracy >= 0.7
    _saved_head_is_float32(result, tmp_path / "bf16.keras")
