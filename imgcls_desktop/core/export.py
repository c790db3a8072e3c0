"""Run it elsewhere: export a model to TensorFlow SavedModel, TFLite or ONNX, and check it.

Every export takes raw RGB pixels (float32 0-255, shape ``(batch, height, width, 3)`` at
the model's input size) and returns class probabilities: the preprocessing is inside the
graph. When the model carries a temperature (see :mod:`core.calibration`), the exported
graph divides the logits by it before the softmax, so an export gives the same calibrated
probabilities as the app. The class names and the unknown threshold travel beside it, in
``labels.txt`` and ``imgcls_export.json`` (inside a SavedModel folder; next to a ``.tflite``
or ``.onnx`` file as ``<name>.labels.txt`` and ``<name>.imgcls.json``).

Each export is checked by :func:`verify_export`, which loads it in its own runtime and
compares it with the ``.keras`` model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import keras_module, tensorflow_module
from .calibration import single_input, temperature_of, unknown_threshold_of
from .errors import ExportError
from .names import display_name
from .output_files import write_atomic
from .tta import mode_of as tta_mode_of, tta_logits

if TYPE_CHECKING:
    from .model_io import LoadedModel

FORMATS = ("saved_model", "tflite", "onnx")
ONNX_INSTALL_HINT = "pip install tf2onnx onnxruntime"
# Probabilities of an export may differ from Keras' by float rounding, not more.
TOLERANCE = 1e-4


def sidecar_paths(out_path: str | os.PathLike, format: str) -> tuple[Path, Path]:
    """Where ``(labels.txt, json)`` go for an export at ``out_path``.

    Args:
        out_path: The export's folder (SavedModel) or file.
        format: One of :data:`FORMATS`.

    Returns:
        ``(labels path, JSON path)``.
    """
    out_path = Path(out_path)
    if format == "saved_model":
        return out_path / "labels.txt", out_path / "imgcls_export.json"
    return (out_path.with_name(out_path.stem + ".labels.txt"),
            out_path.with_name(out_path.stem + ".imgcls.json"))


def export_graph(loaded: LoadedModel) -> tuple[Any, bool]:
    """The Keras model to export: the model itself, or one with its answer rule built in.

    The temperature becomes a ``Rescaling(1 / T)`` layer between ``logits`` and a new
    softmax; a model answering with test-time augmentation gets the mean logits of its
    views (:mod:`core.tta`). Plain Keras layers and ops, so the export needs no custom
    code and gives what the app's Predictor gives.

    Args:
        loaded: The model and its metadata.

    Returns:
        ``(Keras model, calibrated)``: ``calibrated`` is True when the temperature is built in.
    """
    temperature = temperature_of(loaded.metadata)
    model = loaded.model
    tta = tta_mode_of(loaded.metadata)
    if temperature is None and not tta:
        return model, False
    try:
        logits_layer = model.get_layer("logits")
    except ValueError:
        return model, False
    keras = keras_module()
    if tta:
        logits_of = keras.Model(single_input(model), logits_layer.output, name="logits_model")
        image = keras.Input(model.inputs[0].shape[1:], name="image")
        logits = tta_logits(logits_of, image, tta)
        inputs = image
    else:
        logits, inputs = logits_layer.output, single_input(model)
    if temperature is not None:
        logits = keras.layers.Rescaling(1.0 / temperature, name="temperature")(logits)
    probabilities = keras.layers.Softmax(name="calibrated_probabilities")(logits)
    return keras.Model(inputs, probabilities, name=f"{model.name}_export"), temperature is not None


def export_model(loaded: LoadedModel, out_path: str | os.PathLike, format: str) -> dict[str, Any]:
    """Export ``loaded`` (a :class:`model_io.LoadedModel`) to ``out_path`` in ``format``.

    Args:
        loaded: The model and its class names.
        out_path: A folder for "saved_model" (created; must not exist or be empty), a
            file for "tflite" and "onnx".
        format: One of :data:`FORMATS`.

    Returns:
        A dict: ``format``, ``path``, ``bytes`` (the export's size), ``calibrated``,
        ``files`` (the export and its sidecars).

    Raises:
        ExportError: Unknown format, a missing converter, or a failed conversion.
    """
    if format not in FORMATS:
        raise ExportError(f"Unknown export format {format!r}. Choose one of: {', '.join(FORMATS)}.")
    out_path = Path(out_path)
    parent = out_path.parent if str(out_path.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"Cannot export to {out_path}: the folder {parent} does not exist.")
    if format == "saved_model" and out_path.exists() and (
            not out_path.is_dir() or any(out_path.iterdir())):
        raise ExportError(f"Cannot export to {out_path}: it exists and is not an empty folder. "
                          "Choose a new folder name.")
    if format == "onnx":
        _require_tf2onnx()
    model, calibrated = export_graph(loaded)
    try:
        if format == "saved_model":
            _export_saved_model(model, out_path)
        elif format == "tflite":
            _export_tflite(model, out_path)
        else:
            _export_onnx(model, out_path, loaded.image_size)
    except ExportError:
        raise
    except Exception as exc:  # converters raise many kinds; say what failed and where
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"Exporting to {format} at {out_path} failed: {message}") from exc
    labels_path, json_path = sidecar_paths(out_path, format)
    # Sidecars whole or not at all; a class name that is not UTF-8 is written as \\xNN.
    write_atomic(labels_path, "".join(display_name(name) + "\n" for name in loaded.class_names))
    info = {
        "format": format,
        "class_names": list(loaded.class_names),
        "input": {"shape": [None, *loaded.image_size, 3], "dtype": "float32",
                  "range": "raw RGB pixels 0-255"},
        "output": "class probabilities" + (" (temperature-calibrated)" if calibrated else ""),
        "calibrated": calibrated,
        "temperature": temperature_of(loaded.metadata) if calibrated else None,
        "unknown_threshold": unknown_threshold_of(loaded.metadata) if calibrated else None,
        "preset": loaded.metadata.get("preset"),
    }
    write_atomic(json_path, json.dumps(info, indent=1))
    return {"format": format, "path": str(out_path), "bytes": _size(out_path),
            "calibrated": calibrated, "files": [str(out_path), str(labels_path), str(json_path)]}


def _size(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _export_saved_model(model, out_path):
    # Keras 3 writes a "serve" endpoint and the "serving_default" signature.
    model.export(str(out_path), format="tf_saved_model", verbose=False)


def _tflite_module():
    tf = tensorflow_module()
    lite = getattr(tf, "lite", None)
    if lite is None or not hasattr(lite, "TFLiteConverter"):
        raise ExportError(
            f"This TensorFlow ({tf.__version__}) has no TFLite converter (tf.lite). "
            "Install the full 'tensorflow' package to export to TFLite."
        )
    return lite


def _export_tflite(model, out_path):
    lite = _tflite_module()
    # Through a SavedModel: the most reliable route for Keras 3 models.
    with tempfile.TemporaryDirectory(prefix="imgcls-export-") as folder:
        saved = Path(folder) / "saved_model"
        _export_saved_model(model, saved)
        converter = lite.TFLiteConverter.from_saved_model(str(saved))
        flatbuffer = converter.convert()
    temp = out_path.with_name(f".{out_path.name}.tmp")
    temp.write_bytes(flatbuffer)
    temp.replace(out_path)


def _require_tf2onnx():
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        raise ExportError(
            "Exporting to ONNX needs the tf2onnx package, which is not installed. "
            f"Install it with: {ONNX_INSTALL_HINT} (onnxruntime is used to check the export)."
        ) from None


def _register_erfc_for_onnx():
    """Teach tf2onnx TensorFlow's ``Erfc``, which the exact GELU (fast_cnn) is made of.

    ONNX has ``Erf`` but no ``Erfc``: tf2onnx 1.17 writes the node unconverted and
    onnxruntime then refuses the whole file. ``erfc(x) = 1 - erf(x)`` exactly.
    """
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            node.type = "Erf"
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name("erfc_one"), np.array(1, dtype=dtype))
            ctx.insert_new_node_on_output("Sub", node.output[0], inputs=[one.output[0], node.output[0]])

    return Erfc


def _export_onnx(model, out_path, image_size):
    import tf2onnx

    _register_erfc_for_onnx()

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    tf = tensorflow_module()
    height, width = image_size
    spec = tf.TensorSpec((None, height, width, 3), tf.float32, name="image")
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    # Frozen first: tensors the graph captures (EfficientNet's normalisation constants, not
    # variables) would otherwise become extra, unfed inputs of the ONNX graph.
    frozen = convert_variables_to_constants_v2(concrete)
    inputs = [tensor.name for tensor in frozen.inputs if tensor.dtype != tf.resource]
    outputs = [tensor.name for tensor in frozen.outputs]
    temp = out_path.with_name(f".{out_path.name}.tmp")
    tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=inputs, output_names=outputs,
                                   opset=13, output_path=str(temp))
    temp.replace(out_path)


# -- verification -----------------------------------------------------------------------

def _run_saved_model(path, images):
    tf = tensorflow_module()
    restored = tf.saved_model.load(str(path))
    signature = restored.signatures["serving_default"]
    outputs = signature(tf.constant(images))
    return np.asarray(next(iter(outputs.values())))


def _tflite_interpreter(path):
    """LiteRT's interpreter when installed, else TensorFlow's (deprecated, still working)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=str(path)), "LiteRT interpreter (ai_edge_litert)"
    except ImportError:
        pass
    lite = _tflite_module()
    with warnings.catch_warnings():
        # TensorFlow warns that tf.lite.Interpreter will move to LiteRT; it still runs.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        return lite.Interpreter(model_path=str(path)), "TFLite interpreter (tf.lite.Interpreter)"


def _run_tflite(path, images):
    interpreter, _name = _tflite_interpreter(path)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(images.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], images)
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def _run_onnx(path, images):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: images})[0])


def _runtime_name(format):
    if format == "saved_model":
        return f"TensorFlow {tensorflow_module().__version__} (tf.saved_model.load)"
    if format == "tflite":
        try:
            import ai_edge_litert  # noqa: F401

            return "LiteRT interpreter (ai_edge_litert)"
        except ImportError:
            return "TFLite interpreter (tf.lite.Interpreter)"
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def verify_export(loaded: LoadedModel, export_path: str | os.PathLike, format: str,
                  sample_images: np.ndarray | Sequence[np.ndarray]) -> dict[str, Any]:
    """Load an export in its own runtime and compare it with the ``.keras`` model.

    Args:
        loaded: The model that was exported.
        export_path: What :func:`export_model` wrote.
        format: Its format.
        sample_images: Raw pixels ``(n, h, w, 3)`` at the model's input size.

    Returns:
        A dict: ``verified`` (False only when the runtime is not installed, with
        ``reason``), ``runtime``, ``num_images``, ``top1_agreement`` (share of images with
        the same top class), ``max_abs_difference`` (largest probability difference) and
        ``ok`` (every top-1 agrees except true ties, and the difference is within
        :data:`TOLERANCE`).

    Raises:
        ExportError: Unknown format, the export could not be run, or it gave another shape.
    """
    from .inference import Predictor

    images = np.asarray(sample_images, dtype=np.float32)
    if format == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return {"verified": False, "format": format, "ok": None,
                    "reason": f"onnxruntime is not installed ({ONNX_INSTALL_HINT})"}
    runner = {"saved_model": _run_saved_model, "tflite": _run_tflite, "onnx": _run_onnx}.get(format)
    if runner is None:
        raise ExportError(f"Unknown export format {format!r}. Choose one of: {', '.join(FORMATS)}.")
    expected = Predictor(loaded).probabilities(images)
    try:
        actual = runner(export_path, images)
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"The {format} export at {export_path} could not be run: {message}") from exc
    if actual.shape != expected.shape:
        raise ExportError(f"The {format} export at {export_path} returned shape {actual.shape}; "
                          f"expected {expected.shape}.")
    same = actual.argmax(axis=1) == expected.argmax(axis=1)
    ordered = np.sort(expected, axis=1)
    margin = ordered[:, -1] - ordered[:, -2] if expected.shape[1] > 1 else np.ones(len(expected))
    difference = float(np.max(np.abs(actual - expected))) if len(expected) else 0.0
    return {
        "verified": True,
        "format": format,
        "runtime": _runtime_name(format),
        "num_images": int(len(images)),
        "top1_agreement": float(same.mean()) if len(same) else 1.0,
        "max_abs_difference": difference,
        "ok": bool(np.all(same | (margin < TOLERANCE)) and difference <= TOLERANCE),
    }


def random_sample_images(image_size: Sequence[int], count: int = 8, seed: int = 0) -> np.ndarray:
    """Uniform-noise raw pixels to compare an export with its model on.

    Args:
        image_size: ``(height, width)``.
        count: Images to make.
        seed: The random generator's seed.

    Returns:
        ``(count, height, width, 3)`` float32 pixels in 0-255.
    """
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, *image_size, 3)).astype(np.float32)


def export_and_verify(loaded: LoadedModel, out_path: str | os.PathLike, format: str,
                      sample_images: np.ndarray | Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Export, then check the export in its own runtime (the CLI's and the window's action).

    Args:
        loaded: The model to export.
        out_path: As :func:`export_model`.
        format: One of :data:`FORMATS`.
        sample_images: Images to compare on; random pixels when None.

    Returns:
        :func:`export_model`'s dict with ``verification`` (:func:`verify_export`'s dict).

    Raises:
        ExportError: The export failed, or it disagrees with the model (then the export
            is removed, so no wrong file is left behind).
    """
    if sample_images is None:
        sample_images = random_sample_images(loaded.image_size)
    info = export_model(loaded, out_path, format)
    verification = verify_export(loaded, out_path, format, sample_images)
    info["verification"] = verification
    if verification.get("ok") is False:
        for path in info["files"]:
            _remove(Path(path))
        raise ExportError(
            f"The {format} export disagreed with the model (top-1 agreement "
            f"{verification['top1_agreement']:.0%}, largest probability difference "
            f"{verification['max_abs_difference']:.2g}); it was removed. Report this as a bug."
        )
    return info


def _remove(path):
    try:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    except OSError:
        pass
