"""Where training runs: one device, all local GPUs, or several machines (``tf.distribute``).

``imgcls train --distribute auto|off|mirrored|multi-worker`` picks a TensorFlow strategy:

- ``auto`` (the default): ``MirroredStrategy`` when more than one GPU is visible, else the
  default strategy (one device; exactly the single-process path of earlier versions);
- ``off``: the default strategy, whatever the machine has;
- ``mirrored``: ``MirroredStrategy`` over the local GPUs (or the CPU);
- ``multi-worker``: ``MultiWorkerMirroredStrategy`` over the machines of the standard
  ``TF_CONFIG`` environment variable. Worker 0 (or the task of type ``chief``) is the
  chief: only it writes the model and the run record.

The batch size a preset or ``--batch-size`` gives is per replica; the global batch is
that times the replicas, and the learning rate is scaled by the square root of the
replicas, the rule training already applies when it changes a preset's batch size.
Stop decisions (time budget, Stop, early stopping) are the chief's: every step, the
workers all-reduce the chief's stop flag, so all of them leave ``fit`` at the same step.

A collective whose peer died blocks forever in TensorFlow 2.21 (the communication
timeout does not end a blocked all-reduce on CPU), so multi-worker runs also watch their
peers' ports: :class:`PeerWatch` reports a worker that stopped answering.

Mixed precision (``mixed_float16``) is chosen on GPUs of compute capability 7.0 or more;
the CPU stays float32, and the last layers (``logits``, ``probabilities``) always compute
in float32 so the softmax and the loss keep their precision (Keras scales the loss).
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import TrainingError

MODES = ("auto", "off", "mirrored", "multi-worker")
FLOAT32_LAYERS = ("logits", "probabilities")  # see the module docstring
MIXED_PRECISION_MIN_CAPABILITY = (7, 0)  # Volta and later have float16 tensor cores


@dataclass(frozen=True)
class Cluster:
    """The parts of ``TF_CONFIG`` training needs."""

    workers: tuple  # "host:port" of every worker (and the chief first, when there is one)
    task_type: str
    task_index: int
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        """Whether this process is the chief: the ``chief`` task, else worker 0."""
        if self.has_chief:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def me(self) -> str:
        """This process's ``"host:port"``."""
        offset = 0 if self.task_type == "chief" or not self.has_chief else 1
        return self.workers[self.task_index + offset]

    @property
    def peers(self) -> tuple[str, ...]:
        """The ``"host:port"`` of every other worker."""
        return tuple(address for address in self.workers if address != self.me)


def read_tf_config(text: str | None) -> Cluster | None:
    """Parse ``TF_CONFIG``; None when it is unset or empty.

    Args:
        text: The value of the ``TF_CONFIG`` environment variable, or None.

    Returns:
        The cluster, or None.

    Raises:
        TrainingError: The text is not a cluster this app can train on (says what to fix).
    """
    if text is None or not text.strip():
        return None
    where = "The TF_CONFIG environment variable"
    example = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise TrainingError(f"{where} is not valid JSON ({exc}); set it as {example}.") from None
    cluster = document.get("cluster") if isinstance(document, dict) else None
    task = document.get("task") if isinstance(document, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TrainingError(f"{where} needs a \"cluster\" and a \"task\" object, {example}.")
    chief = cluster.get("chief") or []
    workers = cluster.get("worker") or []
    if not isinstance(chief, list) or not isinstance(workers, list) or len(chief) > 1:
        raise TrainingError(f"{where}: \"cluster\" must map \"worker\" (and at most one \"chief\") "
                            f"to lists of host:port, {example}.")
    addresses = [*chief, *workers]
    for address in addresses:
        host, _, port = str(address).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise TrainingError(f"{where} names {address!r}, which is not host:port; {example}.")
    if not addresses:
        raise TrainingError(f"{where} lists no worker; {example}.")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in ("worker", "chief") or not isinstance(index, int) or isinstance(index, bool):
        raise TrainingError(f"{where}: \"task\" must be {{\"type\": \"worker\" or \"chief\", "
                            f"\"index\": N}}; got {json.dumps(task)}.")
    count = len(chief) if task_type == "chief" else len(workers)
    if not 0 <= index < count:
        raise TrainingError(f"{where}: task index {index} is not in the cluster's {count} "
                            f"{task_type}(s); number the machines from 0.")
    return Cluster(tuple(str(a) for a in addresses), task_type, index, has_chief=bool(chief))


def choose_kind(mode: str, gpu_count: int, cluster: Cluster | None) -> str:
    """Which strategy a mode means here: "default", "mirrored" or "multi-worker".

    Args:
        mode: One of :data:`MODES`.
        gpu_count: The GPUs visible here.
        cluster: The ``TF_CONFIG`` cluster, or None.

    Returns:
        ``"default"``, ``"mirrored"`` or ``"multi-worker"``.

    Raises:
        TrainingError: An unknown mode, or ``multi-worker`` without ``TF_CONFIG``.
    """
    if mode not in MODES:
        raise TrainingError(f"Unknown --distribute {mode!r}; use one of {', '.join(MODES)}.")
    if mode == "off":
        return "default"
    if mode == "auto":
        return "mirrored" if gpu_count > 1 else "default"
    if mode == "mirrored":
        return "mirrored"
    if cluster is None:
        raise TrainingError(
            "--distribute multi-worker reads the cluster from TF_CONFIG, which is not set. Set it on "
            "every machine, e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", "
            "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}' (index 1 on host2).")
    return "multi-worker"


def precision_policy(gpu_capabilities: Sequence[tuple[int, ...] | None], override: str = "auto") -> str:
    """``"mixed_float16"`` when every GPU trains float16 fast, else ``"float32"``.

    Args:
        gpu_capabilities: The compute capability ``(major, minor)`` of each GPU that
            trains (empty on a CPU); None for a GPU that does not say.
        override: "auto" (the rule above), "on" or "off": the ``IMGCLS_MIXED_PRECISION``
            environment variable, for measuring both ways (``benchmarks/gpu_check.sh``);
            "bf16" trains in ``mixed_bfloat16``, for measuring it on CPUs with AVX512_BF16
            or AMX (``benchmarks/time_budget.py --env``). Never chosen by "auto": it was
            not faster at equal accuracy where it was measured (README, *Speed*).

    Returns:
        ``"mixed_float16"``, ``"mixed_bfloat16"`` or ``"float32"``.
    """
    if override == "on":
        return "mixed_float16"
    if override == "bf16":
        return "mixed_bfloat16"
    if override == "off" or not gpu_capabilities:
        return "float32"
    if all(cap is not None and tuple(cap) >= MIXED_PRECISION_MIN_CAPABILITY for cap in gpu_capabilities):
        return "mixed_float16"
    return "float32"


def devices_sentence(gpu_count: int, cores: int, policy: str = "float32", workers: int = 1) -> str:
    """What trains, in words: "CPU, 2 cores", "2 GPUs, mixed precision", "3 machines: 1 GPU each".

    Args:
        gpu_count: GPUs that train on each machine (0: the CPU).
        cores: CPU cores, said when there is no GPU.
        policy: The precision policy (see :func:`precision_policy`).
        workers: Machines that train.

    Returns:
        The sentence.
    """
    if gpu_count:
        local = f"{gpu_count} GPU" + ("s" if gpu_count > 1 else "")
    else:
        local = f"CPU, {cores} core" + ("s" if cores != 1 else "")
    if policy == "mixed_float16":
        local += ", mixed precision"
    elif policy == "mixed_bfloat16":
        local += ", bfloat16"
    if workers > 1:
        return f"{workers} machines: {local} each"
    return local


def global_batch(per_replica: int, replicas: int) -> int:
    """The batch a step sees across all replicas.

    Args:
        per_replica: The batch of one replica.
        replicas: Replicas in sync.

    Returns:
        ``per_replica * replicas``.
    """
    return per_replica * replicas


def learning_rate_scale(replicas: int) -> float:
    """The learning rate's factor for ``replicas`` times the per-replica batch (square root).

    Args:
        replicas: Replicas in sync.

    Returns:
        ``sqrt(replicas)`` (1.0 for one replica).
    """
    return math.sqrt(max(1, replicas))


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity), else the machine's count.

    Returns:
        The number of cores (at least 1).
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _gpu_details():
    """``[(major, minor) or None]`` for each visible GPU (empty without TensorFlow GPUs)."""
    from .backend import tensorflow_module

    tf = tensorflow_module()
    details = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            capability = tf.config.experimental.get_device_details(device).get("compute_capability")
        except (ValueError, RuntimeError):
            capability = None
        details.append(tuple(capability) if capability else None)
    return details


def machine_sentence() -> str:
    """The window's note: the devices ``--distribute auto`` trains on here.

    Returns:
        A sentence as :func:`devices_sentence` gives it (imports TensorFlow).
    """
    details = _gpu_details()
    trains_on = details if len(details) > 1 else details[:1]
    return devices_sentence(len(trains_on), cpu_cores(), precision_policy(trains_on))


@dataclass
class Plan:
    """A chosen strategy and what follows from it."""

    kind: str  # "default", "mirrored" or "multi-worker"
    strategy: Any  # a tf.distribute.Strategy, or None for the default one
    replicas: int = 1
    workers: int = 1
    is_chief: bool = True
    policy: str = "float32"
    gpus: int = 0
    cluster: Cluster | None = None
    sentence: str = ""
    in_fit: bool = False  # inside Keras fit, where every step waits for every worker
    fits_ended: int = 0

    def waiting_on_peers(self) -> bool:
        """True while every worker must still be there.

        That is up to the end of the first ``fit`` (building the model broadcasts its
        weights), then inside each ``fit``. After a ``fit`` a peer may simply be done
        first: calibration and saving are not collective.

        Returns:
            Whether a peer that stops answering has been lost.
        """
        return self.in_fit or self.fits_ended == 0

    @property
    def distributed(self) -> bool:
        """Whether a strategy other than the default (one device) trains."""
        return self.kind != "default"

    @contextmanager
    def scope(self) -> Iterator[Plan]:
        """The strategy's scope; models and optimizers made inside it train on its devices.

        Yields:
            This plan, the active one (:func:`active_plan`) until the scope ends.
        """
        global _active
        previous, _active = _active, self
        try:
            if self.distributed:
                with self.strategy.scope():
                    yield self
            else:
                yield self
        finally:
            _active = previous

    def agree(self, flag: bool) -> bool:
        """The chief's ``flag``, the same on every worker (an all-reduce; one process: ``flag``).

        Args:
            flag: This worker's flag.

        Returns:
            The chief's flag.
        """
        if self.kind != "multi-worker":
            return bool(flag)
        return self.chief_value(1.0 if flag else 0.0) > 0.5

    def chief_value(self, value: float) -> float:
        """The chief's ``value`` (a float), the same on every worker; one process: ``value``.

        What each worker computes from its own clock (the time-budget fraction that sets
        the learning rate) differs by milliseconds; mirrored weights updated with
        different learning rates would drift apart, so the chief's value is used.

        Args:
            value: This worker's value.

        Returns:
            The chief's value.
        """
        if self.kind != "multi-worker":
            return value
        from .backend import tensorflow_module

        tf = tensorflow_module()
        local_replicas = max(1, len(self.strategy.extended.worker_devices))
        mine = float(value) / local_replicas if self.is_chief else 0.0
        total = self.strategy.run(lambda: tf.constant(mine, tf.float32))
        return float(self.strategy.reduce("SUM", total, axis=None))

    def datasets(self, make_train: Callable[[tuple[int, int]], Any], make_val: Callable[[], Any] | None,
                 count: int, per_replica: int,
                 class_weight: Mapping[int, float] | None = None) -> tuple[Any, Any, int]:
        """Distributed ``(train, validation or None, steps per epoch)``.

        Args:
            make_train: ``shard -> tf.data.Dataset`` of per-replica batches, where ``shard``
                is ``(index, count)``: this worker's part of every epoch's order.
            make_val: ``() -> tf.data.Dataset`` or None. Every worker evaluates the whole
                validation split: the metrics are summed across workers, so the accuracy
                is the same, and no worker can run out of batches before another (which
                would leave the others blocked in an all-reduce).
            count: Training images.
            per_replica: The batch of one replica.
            class_weight: Keras' ``{class: weight}``, turned into sample weights here
                (Keras cannot map a distributed dataset).

        Returns:
            ``(train, validation or None, steps per epoch)``: distributed datasets.
        """
        from .backend import tensorflow_module

        tf = tensorflow_module()

        def weighted(dataset):
            if not class_weight:
                return dataset
            weights = tf.constant([class_weight[i] for i in range(len(class_weight))], tf.float32)
            return dataset.map(lambda x, y: (x, y, tf.gather(weights, tf.argmax(y, axis=-1))))

        def train_fn(context):
            return weighted(make_train((context.input_pipeline_id, context.num_input_pipelines)))

        train = self.strategy.distribute_datasets_from_function(train_fn)
        val = (self.strategy.distribute_datasets_from_function(lambda context: make_val())
               if make_val is not None else None)
        steps = math.ceil(count / global_batch(per_replica, self.replicas))
        return train, val, steps

    def stop_callback(self, keras: Any) -> Any:
        """A Keras callback, placed last, that makes every worker stop when the chief does.

        Args:
            keras: The ``keras`` module.

        Returns:
            The ``keras.callbacks.Callback``.
        """
        plan = self

        callback_class: Any = keras.callbacks.Callback

        class AgreeOnStop(callback_class):
            def on_train_begin(self, logs=None):
                plan.in_fit = True

            def on_train_end(self, logs=None):
                plan.in_fit = False
                plan.fits_ended += 1

            def on_train_batch_end(self, batch, logs=None):
                self.model.stop_training = plan.agree(self.model.stop_training)

            def on_epoch_end(self, epoch, logs=None):
                self.model.stop_training = plan.agree(self.model.stop_training)

        return AgreeOnStop()

    def float32_head(self, model: Any) -> Any:
        """Under mixed precision, make the last layers compute in float32 (a no-op otherwise).

        Args:
            model: A Keras model.

        Returns:
            The same model.
        """
        if self.policy not in ("mixed_float16", "mixed_bfloat16"):
            return model
        keras_float32_head(model)
        return model


def run_reporting_lost_workers(plan: Plan, work: Callable[[], Any]) -> Any:
    """``work()``; under multi-worker, a failed collective becomes a :class:`TrainingError`.

    Nothing is written before training returns, so the message can promise that.

    Args:
        plan: The plan training runs under.
        work: What to run.

    Returns:
        What ``work()`` returned.

    Raises:
        TrainingError: A worker of the cluster stopped answering.
    """
    if plan.kind != "multi-worker":
        return work()
    from .backend import tensorflow_module

    tf = tensorflow_module()
    try:
        return work()
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
            tf.errors.AbortedError, tf.errors.InternalError) as exc:
        raise TrainingError(
            f"A worker of the cluster stopped answering during training ({_tf_reason(exc)}); no model "
            "was written. Check every machine of TF_CONFIG is up and start all workers again.") from None


def _tf_reason(exc):
    """The human part of a TensorFlow error: its last line, without the op names before it."""
    text = str(getattr(exc, "message", "") or exc).strip()
    text = text.splitlines()[-1] if text else type(exc).__name__
    text = text.rsplit("}}", 1)[-1].strip(" :")
    return (text or type(exc).__name__)[:200]


def keras_float32_head(model: Any) -> None:
    """Set the ``FLOAT32_LAYERS`` of ``model`` (nested models included) to compute in float32.

    Args:
        model: A Keras model, changed in place.
    """
    from .backend import keras_module

    keras = keras_module()
    for layer in _all_layers(model):
        if layer.name in FLOAT32_LAYERS:
            layer.dtype_policy = keras.dtype_policies.DTypePolicy("float32")


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


_ONE_DEVICE = Plan("default", None)
_plans: dict[Any, Plan] = {}
_plans_lock = threading.Lock()
_active: Plan | None = None


def active_plan() -> Plan:
    """The plan whose scope training is in, else one device as before (changes nothing).

    Returns:
        The active :class:`Plan`.
    """
    return _active if _active is not None else _ONE_DEVICE


def plan_for(mode: str = "auto", environ: Mapping[str, str] | None = None) -> Plan:
    """The :class:`Plan` for a ``--distribute`` mode, made once per process.

    A ``MultiWorkerMirroredStrategy`` must exist before TensorFlow runs its first op,
    so the CLI calls this before anything else touches TensorFlow.

    Args:
        mode: One of :data:`MODES`.
        environ: Where ``TF_CONFIG`` is read (default ``os.environ``).

    Returns:
        The plan (the same one for the same mode in this process).

    Raises:
        TrainingError: A bad mode, ``TF_CONFIG`` or ``IMGCLS_MIXED_PRECISION``.
    """
    environ = os.environ if environ is None else environ
    cluster = read_tf_config(environ.get("TF_CONFIG")) if mode == "multi-worker" else None
    with _plans_lock:
        if mode in _plans:
            return _plans[mode]
        plan = _make_plan(mode, cluster)
        _plans[mode] = plan
        return plan


def _make_plan(mode, cluster):
    from .backend import keras_module, tensorflow_module

    details = _gpu_details()
    kind = choose_kind(mode, len(details), cluster)
    override = os.environ.get("IMGCLS_MIXED_PRECISION", "auto").strip().lower()
    if override not in ("auto", "on", "off", "bf16"):
        raise TrainingError(f"IMGCLS_MIXED_PRECISION is {override!r}; use auto, on, off or bf16.")
    if kind == "default":
        trains_on = details[:1]
        policy = precision_policy(trains_on, override)
        _set_policy(policy)
        return Plan("default", None, policy=policy, gpus=len(trains_on),
                    sentence=devices_sentence(len(trains_on), cpu_cores(), policy))
    tf = tensorflow_module()
    keras_module()
    policy = precision_policy(details, override)
    _set_policy(policy)
    if kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        return Plan("mirrored", strategy, replicas=strategy.num_replicas_in_sync, policy=policy,
                    gpus=len(details), sentence=devices_sentence(len(details), cpu_cores(), policy))
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    _patch_keras_for_multi_worker()
    workers = len(cluster.workers)
    return Plan("multi-worker", strategy, replicas=strategy.num_replicas_in_sync, workers=workers,
                is_chief=cluster.is_chief, policy=policy, gpus=len(details), cluster=cluster,
                sentence=devices_sentence(len(details), cpu_cores(), policy, workers=workers))


def _set_policy(policy):
    from .backend import keras_module

    keras_module().mixed_precision.set_global_policy(policy)


_patched = False


def _patch_keras_for_multi_worker():
    """Two fixes Keras 3.15's TensorFlow trainer needs under ``MultiWorkerMirroredStrategy``.

    1. Before the first step it builds the model from one batch, all-reducing the
       *tuple* of per-replica tensors, which ``strategy.reduce`` cannot take: build
       from this worker's batch instead (only its shapes matter).
    2. It reduces the step's logs with ``reduce("MEAN", axis=0)``, which fails on the
       scalar metrics: those come from metric variables already summed across workers,
       so per-replica values are averaged over the whole value (``axis=None``).
    Both only change what happens under a multi-worker strategy.
    """
    global _patched
    if _patched:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], batch)
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if (reduction in ("auto", "mean")
                and tf_trainer._collective_all_reduce_multi_worker(strategy)):
            return tree.map_structure(
                lambda value: (strategy.reduce("MEAN", value, axis=None)
                               if tf_trainer._is_per_replica_instance(value) else value), values)
        return original_reduce(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _patched = True


class PeerWatch:
    """Notices a multi-worker peer that stopped answering, and says so once.

    A thread connects to every peer's ``TF_CONFIG`` port each ``interval`` seconds. A
    peer that answered before and then refuses or times out ``misses`` times in a row
    while ``busy()`` (this worker is inside ``fit``, where every step waits for every
    worker) has died: its process exited, or its machine went away. Outside ``fit`` a peer
    may simply have finished first (calibration and saving are not collective). A peer
    that never answers within ``start_timeout`` seconds never started. Either way
    ``on_lost(message)`` is called, from the watch thread: TensorFlow's collectives would
    wait for that peer forever.
    """

    def __init__(self, cluster, on_lost, busy=lambda: True, interval=1.0, misses=3,
                 start_timeout=300.0):
        self.cluster = cluster
        self.on_lost = on_lost
        self.busy = busy
        self.interval = interval
        self.misses = misses
        self.start_timeout = start_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="imgcls-peer-watch", daemon=True)

    def start(self) -> PeerWatch:
        """Start the watch thread.

        Returns:
            This watch.
        """
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (the thread ends within ``interval`` seconds)."""
        self._stop.set()

    def _watch(self):
        began = time.monotonic()
        seen = {peer: False for peer in self.cluster.peers}
        failures = dict.fromkeys(seen, 0)
        while not self._stop.wait(self.interval):
            for peer in seen:
                if _answers(peer, timeout=max(0.5, self.interval)):
                    seen[peer], failures[peer] = True, 0
                    continue
                failures[peer] = failures[peer] + 1 if self.busy() else 0
                if seen[peer] and failures[peer] >= self.misses:
                    message = (f"worker {peer} stopped answering during training (it exited or its "
                               "machine went away)")
                elif not seen[peer] and time.monotonic() - began > self.start_timeout:
                    message = (f"worker {peer} never started: nothing answered there for "
                               f"{self.start_timeout:.0f} s (check TF_CONFIG and start every worker)")
                else:
                    continue
                if not self._stop.is_set():
                    self._stop.set()
                    self.on_lost(message)
                return


def _answers(address, timeout):
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False
