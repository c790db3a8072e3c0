"""Robustness check: accuracy when the evaluation images are blurred, darkened, compressed...

Each corruption is applied to the uint8 pixels the model would see (the output of
:func:`images.load_image` at the model's input size), so the numbers say how the model
copes with photos a little worse than its test set, class by class.
:func:`graded_corruptions` gives each kind of change at three severities (the window's check).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .errors import Cancelled, DatasetError, ImageError
from .images import load_image

if TYPE_CHECKING:
    from .dataset import ImageItem
    from .model_io import LoadedModel


@dataclass(frozen=True)
class Corruption:
    """A named change to a uint8 RGB image; ``apply(image, index)`` returns the same shape."""

    name: str
    title: str
    function: Callable[[Image.Image, int], Image.Image]  # (image, index in the batch) -> changed image
    family: str = ""  # the kind of change, shared by its severities ("": use the name)
    severity: int = 0  # 1 (mild) .. len(SEVERITIES[family]) (harsh); 0 when not graded

    def apply(self, pixels: np.ndarray, index: int = 0) -> np.ndarray:
        """Apply the change to one image.

        Args:
            pixels: ``(h, w, 3)`` uint8 RGB.
            index: The image's place in its batch (rotation alternates its direction by it).

        Returns:
            ``(h, w, 3)`` uint8 RGB, the same size (resized back if the change resized it).
        """
        image = Image.fromarray(np.asarray(pixels, dtype=np.uint8), "RGB")
        changed = self.function(image, index)
        if changed.size != image.size:
            changed = changed.resize(image.size, Image.Resampling.BILINEAR)
        return np.asarray(changed.convert("RGB"), dtype=np.uint8)


def gaussian_blur(relative_radius: float = 1 / 32, name: str = "blur") -> Corruption:
    """Gaussian blur whose radius is ``relative_radius`` of the shorter side (at least 0.5 px).

    Args:
        relative_radius: The radius as a fraction of the shorter side.
        name: The corruption's name.

    Returns:
        The :class:`Corruption`.
    """
    def blur(image, _index):
        radius = max(0.5, relative_radius * min(image.size))
        return image.filter(ImageFilter.GaussianBlur(radius))
    return Corruption(name, f"blur ({relative_radius:.3g} of the side)", blur)


def brightness(factor: float, name: str) -> Corruption:
    """Brightness times ``factor`` (above 1 brighter, below 1 darker).

    Args:
        factor: The brightness factor.
        name: The corruption's name.

    Returns:
        The :class:`Corruption`.
    """
    return Corruption(name, f"brightness x{factor:g}",
                      lambda image, _index: ImageEnhance.Brightness(image).enhance(factor))


def contrast(factor: float, name: str = "contrast") -> Corruption:
    """Contrast times ``factor`` (below 1: flatter).

    Args:
        factor: The contrast factor.
        name: The corruption's name.

    Returns:
        The :class:`Corruption`.
    """
    return Corruption(name, f"contrast x{factor:g}",
                      lambda image, _index: ImageEnhance.Contrast(image).enhance(factor))


def jpeg(quality: int = 20, name: str = "jpeg") -> Corruption:
    """A JPEG round trip at ``quality`` (1-95).

    Args:
        quality: The JPEG quality.
        name: The corruption's name.

    Returns:
        The :class:`Corruption`.
    """
    def compress(image, _index):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")
    return Corruption(name, f"JPEG quality {quality}", compress)


def rotation(degrees: float = 10.0, name: str = "rotate") -> Corruption:
    """Rotation by +degrees and -degrees on alternate images; corners filled with the mean colour.

    Args:
        degrees: The angle.
        name: The corruption's name.

    Returns:
        The :class:`Corruption`.
    """
    def rotate(image, index):
        fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
        angle = degrees if index % 2 == 0 else -degrees
        return image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    return Corruption(name, f"rotation ±{degrees:g}°", rotate)


def downscale(factor: float = 2, name: str = "downscale") -> Corruption:
    """Shrunk by ``factor`` and enlarged back: the detail of a smaller photo.

    Args:
        factor: How much smaller (whole or not: 1.5 gives whole pixels too).
        name: The corruption's name.

    Returns:
        The :class:`Corruption`.
    """
    def shrink(image, _index):
        # int(a / b), not a // b: the same for whole factors, and 1.5 gives whole pixels too.
        small = image.resize((max(1, int(image.width / factor)), max(1, int(image.height / factor))),
                             Image.Resampling.BILINEAR)
        return small.resize(image.size, Image.Resampling.BILINEAR)
    return Corruption(name, f"downscale 1/{factor} and back", shrink)


# The one definition of the corruptions: family -> (factory, one argument per severity,
# mild to harsh). The window checks every severity (graded_corruptions); `imgcls robustness`
# applies the middle one of each family (DEFAULT_CORRUPTIONS), a column of the window's table.
SEVERITIES: dict[str, tuple[Callable[..., Corruption], tuple[float, ...]]] = {
    "blur": (gaussian_blur, (1 / 64, 1 / 32, 1 / 16)),
    "brighter": (brightness, (1.25, 1.5, 2.0)),
    "darker": (brightness, (0.75, 0.5, 0.25)),
    "contrast": (contrast, (0.75, 0.5, 0.25)),
    "jpeg": (jpeg, (50, 20, 5)),
    "rotate": (rotation, (5.0, 10.0, 20.0)),
    "downscale": (downscale, (1.5, 2, 3)),
}
MIDDLE_SEVERITY = 2


def _corruption(family, severity, name):
    factory, arguments = SEVERITIES[family]
    made = factory(arguments[severity - 1], name=name)
    return Corruption(made.name, made.title, made.function, family, severity)


def graded_corruptions(families: Iterable[str] | None = None) -> list[Corruption]:
    """Every family of :data:`SEVERITIES` at each of its severities, named ``"family-N"``.

    Args:
        families: Family names to include (default: all, in :data:`SEVERITIES` order).

    Returns:
        A list of :class:`Corruption` with ``family`` and ``severity`` set.

    Raises:
        DatasetError: A family is not one of :data:`SEVERITIES`.
    """
    chosen = list(SEVERITIES) if families is None else list(families)
    unknown = [family for family in chosen if family not in SEVERITIES]
    if unknown:
        raise DatasetError(f"Unknown corruption family {unknown[0]!r}. Choose among: {', '.join(SEVERITIES)}.")
    return [_corruption(family, severity, f"{family}-{severity}")
            for family in chosen for severity in range(1, len(SEVERITIES[family][1]) + 1)]


# What `imgcls robustness` applies: the middle severity of each family, named by the family.
DEFAULT_CORRUPTIONS = tuple(_corruption(family, MIDDLE_SEVERITY, family) for family in SEVERITIES)
# The corruptions robustness_report accepts by name: `imgcls robustness`'s.
CORRUPTIONS_BY_NAME = {corruption.name: corruption for corruption in DEFAULT_CORRUPTIONS}


def _resolve(corruptions):
    resolved = []
    for corruption in corruptions:
        if isinstance(corruption, str):
            try:
                corruption = CORRUPTIONS_BY_NAME[corruption]
            except KeyError:
                raise DatasetError(
                    f"Unknown corruption {corruption!r}. Choose among: {', '.join(CORRUPTIONS_BY_NAME)}."
                ) from None
        resolved.append(corruption)
    return resolved


def robustness_report(loaded: LoadedModel, items: Sequence[ImageItem], class_names: Sequence[str],
                      corruptions: Iterable[Corruption | str] = DEFAULT_CORRUPTIONS, *,
                      batch_size: int = 64, on_progress: Callable[[int, int], None] | None = None,
                      stop_event: threading.Event | None = None) -> dict[str, Any]:
    """Accuracy, overall and per class, on clean and corrupted copies of ``items``.

    Args:
        loaded: A :class:`model_io.LoadedModel`.
        items: :class:`dataset.ImageItem` list (labels index ``class_names``).
        class_names: The dataset's class names; matched to the model's by name.
        corruptions: :class:`Corruption` objects or names from ``CORRUPTIONS_BY_NAME``.
        batch_size: Images per call of the model.
        on_progress: Optional ``callable(done, total)`` over (conditions x images).
        stop_event: Optional ``threading.Event``; when set, raises :class:`errors.Cancelled`.

    Returns:
        ``{"class_names", "num_images", "conditions": [{"name", "title", "family",
        "severity", "accuracy", "per_class": {class: accuracy or None}, "drop"}], "errors":
        [{"path", "reason"}]}``; the first condition is ``"clean"``; ``drop`` is clean
        accuracy minus this one; ``family`` is the name and ``severity`` 0 for ungraded ones.

    Raises:
        DatasetError: An unknown corruption, classes the model does not know, or no usable image.
        Cancelled: ``stop_event`` was set.
    """
    from .inference import Predictor

    resolved: list[Corruption] = _resolve(corruptions)
    model_index = {name: i for i, name in enumerate(loaded.class_names)}
    unknown = sorted({class_names[item.label] for item in items} - set(model_index))
    if unknown:
        raise DatasetError(
            f"The dataset has class(es) the model does not know: {', '.join(unknown)}. "
            f"The model's classes are: {', '.join(loaded.class_names)}.")
    pixels, labels, errors = [], [], []
    for item in items:
        try:
            pixels.append(load_image(item.path, loaded.image_size))
            labels.append(model_index[class_names[item.label]])
        except ImageError as exc:
            errors.append({"path": str(item.path), "reason": exc.reason})
    if not pixels:
        raise DatasetError("No usable images to check robustness on.")
    label_array = np.asarray(labels, dtype=np.int64)
    predictor = Predictor(loaded, batch_size=batch_size)
    conditions = [Corruption("clean", "clean (no change)", lambda image, _index: image)] + resolved
    total = len(conditions) * len(pixels)
    done = 0
    rows: list[dict[str, Any]] = []
    for condition in conditions:
        predicted = []
        for start in range(0, len(pixels), batch_size):
            if stop_event is not None and stop_event.is_set():
                raise Cancelled("robustness check cancelled")
            chunk = pixels[start:start + batch_size]
            if condition.name == "clean":
                batch = np.stack(chunk)
            else:
                batch = np.stack([condition.apply(image, start + offset) for offset, image in enumerate(chunk)])
            predicted.append(predictor.probabilities(batch).argmax(axis=1))
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, total)
        correct = np.concatenate(predicted) == label_array
        per_class: dict[str, float | None] = {}
        for index, name in enumerate(loaded.class_names):
            mask = label_array == index
            per_class[name] = round(float(correct[mask].mean()), 6) if mask.any() else None
        rows.append({"name": condition.name, "title": condition.title,
                     "family": condition.family or condition.name, "severity": condition.severity,
                     "accuracy": round(float(correct.mean()), 6), "per_class": per_class})
    clean = rows[0]["accuracy"]
    for row in rows:
        row["drop"] = round(clean - row["accuracy"], 6)
    return {"class_names": list(loaded.class_names), "num_images": int(len(labels)),
            "conditions": rows, "errors": errors}


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table: rows are conditions, columns overall + per class.

    Args:
        report: What :func:`robustness_report` returned.

    Returns:
        The table, one line per condition.
    """
    names = report["class_names"]
    width = max([10] + [len(name[:12]) + 2 for name in names])
    lines = [f"{'condition':12s}{'overall':>9s}" + "".join(f"{name[:12]:>{width}s}" for name in names)]
    for row in report["conditions"]:
        cells = "".join(
            f"{'-':>{width}s}" if row["per_class"][name] is None else f"{row['per_class'][name]:>{width}.3f}"
            for name in names)
        lines.append(f"{row['name'][:12]:12s}{row['accuracy']:9.3f}{cells}")
    return "\n".join(lines)


SEVERITY_NAMES = {0: "—", 1: "mild", 2: "medium", 3: "harsh"}


def draw_robustness_chart(figure: Any, report: dict[str, Any]) -> dict[str, Any]:
    """Accuracy under each corruption on ``figure``, the clean accuracy as a dashed line.

    The one chart of a robustness report, for ``imgcls robustness --chart`` and the window.
    When a family was checked at several severities (the window's graded check), each family
    is a line against severity; otherwise (``imgcls robustness``'s one severity per family,
    or corruptions of your own) each corruption is a bar. Per-class figures are in the table.

    Args:
        figure: A matplotlib ``Figure``; it is cleared first.
        report: What :func:`robustness_report` returned.

    Returns:
        ``{family or corruption name: artist}`` plus ``"clean"`` (a ``Line2D``), for tests
        and callers that restyle them.
    """
    figure.clear()
    axes = figure.add_subplot()
    artists: dict[str, Any] = {}
    clean = report["conditions"][0]["accuracy"]
    corrupted = report["conditions"][1:]
    families: dict[str, list[tuple[int, float]]] = {}
    for row in corrupted:
        families.setdefault(row.get("family") or row["name"], []).append(
            (row.get("severity") or 0, row["accuracy"]))
    graded = all(row.get("severity") for row in corrupted) and any(len(p) > 1 for p in families.values())
    if graded:
        for family, points in families.items():
            severities, accuracies = zip(*sorted(points))
            (artists[family],) = axes.plot(severities, accuracies, marker="o", label=family)
        ticks = sorted({severity for points in families.values() for severity, _ in points})
        axes.set_xticks(ticks, [SEVERITY_NAMES.get(s, str(s)) for s in ticks])
        axes.set_xlim(ticks[0] - 0.25, ticks[-1] + 0.25)
        axes.set_xlabel("severity")
    else:
        names = [row["name"] for row in corrupted]
        positions = np.arange(len(names))
        bars = axes.bar(positions, [row["accuracy"] for row in corrupted], 0.6, color="tab:blue")
        artists.update(zip(names, bars))
        axes.set_xticks(positions, names, rotation=30, ha="right")
    artists["clean"] = axes.axhline(clean, color="black", linestyle="--", linewidth=1.2,
                                    label=f"clean ({clean:.0%})")
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("accuracy")
    split = report.get("split") or ""
    axes.set_title(f"Accuracy on {report['num_images']} {split} images".replace("  ", " "))
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return artists


def robustness_figure(report: dict[str, Any], figure: Any = None) -> Any:
    """:func:`draw_robustness_chart` on a new matplotlib ``Figure`` (no pyplot), for saving.

    Args:
        report: What :func:`robustness_report` returned.
        figure: A ``Figure`` to draw on (default: a new 8x4 inch one).

    Returns:
        The ``Figure``.
    """
    from matplotlib.figure import Figure

    figure = figure or Figure(figsize=(8, 4), layout="constrained")
    draw_robustness_chart(figure, report)
    return figure
