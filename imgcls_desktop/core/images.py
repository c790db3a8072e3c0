"""The one image loader shared by training and prediction.

Training and prediction must see identical pixels, so every image goes through
:func:`open_image`: a format allowlist, a pixel cap checked before decoding, the
first frame only, EXIF orientation applied, and one fixed rule per pixel mode.
Every failure becomes an :class:`~imgcls_desktop.core.errors.ImageError` with a
short reason a person can act on.
"""

import os
import re
import struct
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError

SUPPORTED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# EPS/PDF and friends are deliberately absent: EPS hands the file to Ghostscript.
# MPO is how Pillow reports many phone JPEGs that carry a second (preview) image.
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF", "MPO")
# Pillow has no opener named MPO (its JPEG opener returns MPO images) and raises
# KeyError for an unknown name in ``formats``, so the opener list leaves it out.
_OPEN_FORMATS = tuple(name for name in ALLOWED_FORMATS if name != "MPO")

MAX_PIXELS = 50_000_000

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "__macosx"})

NOT_AN_IMAGE = "not an image file (or a format that is not supported: JPEG, PNG, BMP, GIF, WebP, TIFF)"
DAMAGED = "damaged or truncated image data"

# A truncated file must fail, not come back silently half-grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def is_ignored_name(name: str) -> bool:
    """Whether a file or folder name is operating-system clutter to skip silently.

    Args:
        name: A bare file or folder name (not a path).

    Returns:
        True for ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, ``__MACOSX``, AppleDouble
        ``._*`` files and any other hidden (dot) name.
    """
    return name.startswith(".") or name.lower() in _IGNORED_NAMES


def _too_large(width, height):
    return f"image is too large ({width} x {height} pixels; the limit is {MAX_PIXELS // 1_000_000} million)"


def _bomb_reason(exc):
    # Pillow's own check fires inside Image.open, before we can see the size; its message
    # carries only the pixel count.
    match = re.search(r"\((\d+) pixels\)", str(exc))
    limit = f"the limit is {MAX_PIXELS // 1_000_000} million"
    if match:
        return f"image is too large ({int(match.group(1)) / 1e6:,.0f} million pixels; {limit})"
    return f"image is too large ({limit} pixels)"


def _os_reason(exc):
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not an image file"
    if exc.errno is not None:
        return f"could not be read ({exc.strerror or exc})"
    # Pillow raises errno-less OSErrors for bad data ("image file is truncated", ...).
    return DAMAGED


def _to_8bit(array, nominal_max):
    array = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=nominal_max, neginf=0.0)
    scaled = np.rint(np.clip(array, 0.0, nominal_max) * (255.0 / nominal_max))
    return Image.fromarray(scaled.astype(np.uint8), "L")


def _float_nominal_max(array):
    # Float images declare no range; take the smallest usual one that holds the data,
    # so 0..1, 0..255 and 0..65535 images all keep their brightness.
    finite = array[np.isfinite(array)]
    peak = float(finite.max()) if finite.size else 0.0
    for nominal in (1.0, 255.0, 65535.0):
        if peak <= nominal:
            return nominal
    return peak


def _to_rgb(image):
    mode = image.mode
    if mode.startswith("I"):
        # 16-bit PNG/TIFF arrive as I;16* or I; convert("L") would clip at 255 and
        # turn almost every pixel white, so scale the 16-bit range down instead.
        return _to_8bit(np.asarray(image), 65535.0).convert("RGB")
    if mode == "F":
        array = np.asarray(image)
        return _to_8bit(array, _float_nominal_max(array)).convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        # Transparent pixels often hold arbitrary colours; a fixed white background
        # makes them look the same everywhere (and like most viewers show them).
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")


def _decode(path, draft_size=None):
    with warnings.catch_warnings():
        # Pillow's own warning threshold lies above MAX_PIXELS, so during open it only
        # repeats the check made next (which also names the size).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path, formats=_OPEN_FORMATS) as image:
            if image.format not in ALLOWED_FORMATS:
                raise ImageError(path, NOT_AN_IMAGE)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(path, _too_large(width, height))
            # Decoding may meet oversized frames (GIF); those must fail, not warn.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(0)
            if draft_size and image.format in ("JPEG", "MPO"):
                # JPEG can decode at 1/2, 1/4 or 1/8 scale in the DCT (draft mode), for a
                # fraction of the work; a square request keeps both sides at least as large
                # as asked whichever way EXIF later turns the photo.
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            try:
                upright = ImageOps.exif_transpose(image)
            except (SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error, OSError):
                # A malformed EXIF block should not cost a photo whose pixels are fine.
                upright = image.copy()
            return _to_rgb(upright)


def open_image(path: str | os.PathLike, draft_size: int | None = None) -> Image.Image:
    """Open, fully decode and normalise one image file.

    Args:
        path: Path of the image file.
        draft_size: If given, a JPEG may be decoded at a reduced scale (1/2, 1/4, 1/8)
            whose sides stay at least this many pixels; for callers that shrink it anyway.

    Returns:
        A fully loaded ``PIL.Image.Image`` in mode ``"RGB"``: first frame only, EXIF
        orientation applied, 16-bit and float data scaled to 8 bits, alpha and
        palette transparency composited over white.

    Raises:
        ImageError: The file is missing, empty, not an allowed format, larger than
            ``MAX_PIXELS``, or damaged.
    """
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise ImageError(path, _os_reason(exc)) from None
    if os.path.isdir(path):
        raise ImageError(path, "is a folder, not an image file")
    if size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        return _decode(path, draft_size)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(path, _bomb_reason(exc)) from None
    except UnidentifiedImageError:
        raise ImageError(path, NOT_AN_IMAGE) from None
    except MemoryError:
        raise ImageError(path, "not enough memory to decode this image") from None
    except OSError as exc:
        raise ImageError(path, _os_reason(exc)) from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: plugins raise SyntaxError,
        # ValueError, EOFError, struct.error, IndexError...; none may escape as a crash.
        raise ImageError(path, f"{DAMAGED} ({type(exc).__name__}: {exc})") from None


def load_image(path: str | os.PathLike, image_size: Sequence[int] | None) -> np.ndarray:
    """Load one image as the uint8 array models are trained and run on.

    Training and prediction both load through here, so they see identical pixels: a JPEG
    at least twice the asked size is decoded in draft mode (at 1/2 to 1/8 scale in the
    DCT, several times faster) before the bilinear resize.

    Args:
        path: Path of the image file.
        image_size: ``(height, width)`` to resize to (bilinear, aspect ratio not
            kept), or None to keep the native size.

    Returns:
        A ``uint8`` array of shape ``(height, width, 3)``.

    Raises:
        ImageError: The file cannot be read (see :func:`open_image`).
    """
    draft_size = max(int(side) for side in image_size) if image_size is not None else None
    image = open_image(path, draft_size)
    if image_size is not None:
        height, width = (int(side) for side in image_size)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.array(image, dtype=np.uint8)


def validate_image(path: str | os.PathLike, draft_size: int | None = None) -> tuple[int, int]:
    """Fully decode one image to prove it is usable.

    Args:
        path: Path of the image file.
        draft_size: Let a JPEG decode at a reduced scale (see :func:`open_image`): every
            byte is still read, so damage is still found, for a fraction of the work.

    Returns:
        ``(width, height)`` of the upright image (as decoded: reduced in draft mode).

    Raises:
        ImageError: The file cannot be read (see :func:`open_image`).
    """
    return open_image(path, draft_size).size
