"""The window's calls into the engine process (Qt-free; jobs run them off the GUI thread).

Each function here is what a :class:`jobs.Job` runs: it blocks its worker thread on
:meth:`engine.client.EngineClient.call` and returns plain results, or core objects rebuilt
from them. The window process itself never imports TensorFlow.
"""

from ..engine.client import shared_client, shutdown_shared_client
from .session import ModelHandle, model_path


def call(task, *, on_progress=None, stop_event=None, timeout=None, **args):
    return shared_client().call(task, args, on_progress=on_progress, stop_event=stop_event, timeout=timeout)


def start_in_background():
    """Start the engine process now (it imports TensorFlow there); returns at once.

    Even the fork and exec run on a thread: on a busy machine they took 0.25-0.65 s.
    """
    import threading

    threading.Thread(target=shared_client().start, name="imgcls-engine-start", daemon=True).start()


def shutdown(timeout=10.0):
    """Stop the engine process (the window closing). True when none is left running."""
    return shutdown_shared_client(timeout)


def load_engine():
    """Wait for the engine to be ready: its library versions and the devices it trains on."""
    return call("versions")


def open_model(path):
    return ModelHandle.from_info(call("load_model", path=str(path)))


def warm_up(model):
    call("warm_up", path=model_path(model))


def predict(model, paths, top_k=3, stop_event=None):
    return call("predict", path=model_path(model), paths=[str(p) for p in paths], top_k=top_k,
                stop_event=stop_event)


def evaluate(model, items, class_names, split, on_progress=None, stop_event=None):
    return call("evaluate", path=model_path(model), items=list(items), class_names=list(class_names),
                split=split, on_progress=on_progress, stop_event=stop_event)


def save_model(model, target):
    return call("save_model", path=model_path(model), target=str(target))


def explain(model, image_path, class_index=None):
    return call("explain", path=model_path(model), image_path=str(image_path), class_index=class_index)


def robustness(model, items, class_names, split, corruptions=None, on_progress=None, stop_event=None):
    names = None if corruptions is None else [getattr(c, "name", c) for c in corruptions]
    return call("robustness", path=model_path(model), items=list(items), class_names=list(class_names),
                split=split, corruption_names=names, on_progress=on_progress, stop_event=stop_event)


def find_mislabels(scan, folds, epochs, on_progress=None, stop_event=None):
    return call("mislabels", scan=scan, folds=folds, epochs=epochs, on_progress=on_progress,
                stop_event=stop_event)


def export(model, target, format):
    return call("export", path=model_path(model), target=str(target), format=format)


def augmentation_preview(paths, image_size, augmentation, seed=0):
    return call("augmentation_preview", paths=[str(p) for p in paths], image_size=int(image_size),
                augmentation=augmentation, seed=seed)
