"""``imgcls train --distribute multi-worker``: two real worker processes on 127.0.0.1 (issue 14).

Each test starts its workers with free ports and a bounded wait, and kills every process
it started in a ``finally``. The workers share one CPU machine, so they are slow, not
fast: what is checked is that they train together, agree on when to stop, write one model
(the chief's), and that a dead worker ends the run cleanly.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from synthetic import make_shapes_dataset

WAIT_SECONDS = 150  # a whole run, both TensorFlow start-ups included, on 2 busy cores


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_env(ports, index, tmp_path):
    env = dict(os.environ)
    env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                   "task": {"type": "worker", "index": index}})
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["IMGCLS_DATA_DIR"] = str(tmp_path / f"userdata{index}")  # each machine has its own
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["OMP_NUM_THREADS"] = "1"
    return env


def start_workers(tmp_path, argv, count=2):
    ports = free_ports(count)
    procs = []
    for index in range(count):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "imgcls_desktop.cli", "train", *argv, "--distribute", "multi-worker"],
            env=worker_env(ports, index, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True))
    return procs


def kill_all(procs):
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # TensorFlow ignores SIGTERM in a collective
    for proc in procs:
        try:
            proc.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def wait_all(procs, seconds=WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        outputs.append((proc.returncode, out, err))
    return outputs


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes_mw"), num_classes=3, per_class=24, seed=0)


TRAIN = ["--preset", "small_cnn", "--batch-size", "8", "--learning-rate", "0.05", "--seed", "3",
         "--validation-split", "0.25", "--patience", "0", "--no-history"]


@pytest.mark.timeout(280)
def test_two_workers_train_like_one_and_only_the_chief_writes(shapes, tmp_path):
    out = tmp_path / "models" / "shapes.keras"
    out.parent.mkdir()
    before = set(os.listdir(tempfile_root()))
    procs = start_workers(tmp_path, [str(shapes), "--out", str(out), "--epochs", "8", "--json", *TRAIN])
    try:
        (code0, out0, err0), (code1, out1, err1) = wait_all(procs)
    finally:
        kill_all(procs)
    assert code0 == 0, err0[-2000:]
    assert code1 == 0, err1[-2000:]
    assert out1 == ""  # the worker prints nothing: the chief speaks for the run
    chief = json.loads(out0)
    assert os.listdir(out.parent) == ["shapes.keras"]  # one model file, no lock or temp left
    assert chief["model"] == str(out)
    left = {name for name in set(os.listdir(tempfile_root())) - before if name.startswith("imgcls-worker-")}
    assert not left  # the worker's temporary model is gone
    # One process, same settings (the per-replica batch makes the global batch 16 on two).
    single = subprocess.run(
        [sys.executable, "-m", "imgcls_desktop.cli", "train", str(shapes), "--out", str(tmp_path / "one.keras"),
         "--epochs", "8", "--json", "--distribute", "off", *TRAIN],
        env={**worker_env([1, 2], 0, tmp_path), "TF_CONFIG": ""}, capture_output=True, text=True,
        timeout=WAIT_SECONDS)
    assert single.returncode == 0, single.stderr[-2000:]
    one = json.loads(single.stdout)["best_val_accuracy"]
    print(f"best validation accuracy: two workers {chief['best_val_accuracy']:.3f}, one process {one:.3f}")
    assert chief["best_val_accuracy"] >= 0.8
    assert chief["best_val_accuracy"] >= one - 0.15, (chief["best_val_accuracy"], one)


@pytest.mark.timeout(200)
def test_time_budget_is_the_chiefs_and_every_worker_stops_with_it(shapes, tmp_path):
    out = tmp_path / "budget.keras"
    procs = start_workers(tmp_path, [str(shapes), "--out", str(out), "--time-budget", "6", "--json", *TRAIN])
    try:
        (code0, out0, err0), (code1, _out1, err1) = wait_all(procs)
    finally:
        kill_all(procs)
    assert code0 == 0, err0[-2000:]
    assert code1 == 0, err1[-2000:]  # it left fit at the chief's step, not blocked in an all-reduce
    summary = json.loads(out0)
    assert summary["epochs_run"] >= 1
    from imgcls_desktop.core.model_io import check_model_file

    assert check_model_file(out)[1]["training"]["stop_reason"] == "time budget reached"


@pytest.mark.timeout(200)
def test_a_dead_worker_ends_the_chief_with_a_message_and_the_old_model_stays(shapes, tmp_path):
    out = tmp_path / "kept.keras"
    out.write_bytes(b"the previous model")
    procs = start_workers(tmp_path, [str(shapes), "--out", str(out), "--force", "--epochs", "500", *TRAIN])
    try:
        chief, worker = procs
        deadline = time.monotonic() + WAIT_SECONDS
        seen = ""
        while "epoch 1:" not in seen:  # the chief prints a line per epoch: the run is under way
            assert time.monotonic() < deadline, "the workers never finished an epoch"
            assert chief.poll() is None, chief.stderr.read()[-2000:]
            seen += chief.stdout.readline()
        os.killpg(worker.pid, signal.SIGKILL)
        _out, err = chief.communicate(timeout=60)
    finally:
        kill_all(procs)
    assert chief.returncode == 1
    message = [line for line in err.splitlines() if line.startswith("imgcls: error:")]
    assert len(message) == 1, err[-2000:]
    # The peer watch or TensorFlow's own failed all-reduce, whichever notices first.
    assert "stopped answering" in message[0] and "no model was written" in message[0]
    assert out.read_bytes() == b"the previous model"


def tempfile_root():
    import tempfile

    return tempfile.gettempdir()


@pytest.mark.timeout(200)
def test_a_chief_that_refuses_to_start_does_not_leave_the_worker_waiting(shapes, tmp_path, monkeypatch):
    out = tmp_path / "exists.keras"
    out.write_bytes(b"the user's model")  # no --force: the chief refuses
    monkeypatch.setenv("IMGCLS_WORKER_START_TIMEOUT", "20")
    procs = start_workers(tmp_path, [str(shapes), "--out", str(out), "--epochs", "2", *TRAIN])
    try:
        (code0, _out0, err0), (code1, _out1, err1) = wait_all(procs, seconds=120)
    finally:
        kill_all(procs)
    assert code0 == 2 and "pass --force" in err0
    assert code1 == 1, err1[-2000:]  # it ended, instead of waiting for the chief forever
    message = [line for line in err1.splitlines() if line.startswith("imgcls: error:")]
    assert len(message) == 1 and ("stopped answering" in message[0] or "never started" in message[0])
    assert out.read_bytes() == b"the user's model"
