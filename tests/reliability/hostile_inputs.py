"""Builders for the bad inputs of the reliability suite (images, model files, datasets).

Every file is generated in a temporary folder by the test that needs it; nothing is
downloaded. Image builders return the path they wrote.
"""

import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# -- images ---------------------------------------------------------------------------------

def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path, width=30000, height=30000):
    """A real PNG header claiming ``width`` x ``height`` RGB with a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                           + _png_chunk(b"IEND", b""))
    return Path(path)


def _noise(rng, height, width):
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def odd_format_images(folder, seed=0):
    """Write one file per odd format the issue lists; returns {kind: path}.

    Sizes differ from the model's 32x32 and from each other so that resizing, rotation
    and frame choice all matter to the pixels that come out.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = {}

    path = folder / "deep16.png"
    ramp = (np.arange(40 * 24, dtype=np.uint32).reshape(24, 40) * 68).astype(np.uint16)
    Image.fromarray(ramp).save(path)
    files["16-bit PNG"] = path

    path = folder / "deep16.tif"
    Image.fromarray(ramp[::-1].copy()).save(path)
    files["16-bit TIFF"] = path

    path = folder / "print_cmyk.jpg"
    cmyk = Image.fromarray(rng.integers(0, 256, (30, 20, 4), dtype=np.uint8), "CMYK")
    cmyk.save(path, quality=92)
    files["CMYK JPEG"] = path

    path = folder / "palette_transparent.png"
    palette = Image.fromarray(rng.integers(0, 8, (20, 28), dtype=np.uint8), "L").convert("P")
    palette.putpalette([int(v) for v in rng.integers(0, 256, 8 * 3)] + [0] * (248 * 3))
    palette.save(path, transparency=3)
    files["palette + transparency PNG"] = path

    path = folder / "alpha.png"
    rgba = np.concatenate([_noise(rng, 26, 18), rng.integers(0, 256, (26, 18, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(path)
    files["RGBA PNG"] = path

    path = folder / "gray.png"
    Image.fromarray(rng.integers(0, 256, (33, 31), dtype=np.uint8), "L").save(path)
    files["grayscale PNG"] = path

    path = folder / "phone.jpg"
    photo = Image.new("RGB", (48, 24), (0, 0, 0))
    photo.paste((255, 0, 0), (0, 0, 12, 24))  # a red stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    photo.save(path, exif=exif, quality=95)
    files["EXIF orientation 6 JPEG"] = path

    path = folder / "animated.gif"
    frames = [Image.fromarray(_noise(rng, 22, 22)).convert("P") for _ in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0)
    files["animated GIF"] = path

    path = folder / "pages.tiff"
    pages = [Image.fromarray(_noise(rng, 16, 16)), Image.fromarray(_noise(rng, 40, 40))]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    files["multi-page TIFF"] = path

    path = folder / "web.webp"
    Image.fromarray(_noise(rng, 20, 36)).save(path, lossless=True)
    files["WebP"] = path

    path = folder / "UPPER.JPG"
    Image.fromarray(_noise(rng, 27, 35)).save(path, format="JPEG", quality=90)
    files["upper-case .JPG"] = path

    path = folder / "фото猫 é ü.png"
    Image.fromarray(_noise(rng, 21, 23)).save(path)
    files["non-ASCII name"] = path

    deep = folder
    for index in range(3):
        deep = deep / (f"very long folder {index} " + "x" * 90)
    deep.mkdir(parents=True, exist_ok=True)
    path = deep / ("very long name " + "y" * 200 + ".png")
    Image.fromarray(_noise(rng, 19, 29)).save(path)
    files["very long name and path"] = path
    return files


def write_image(path, colour=(120, 60, 30), size=(32, 32)):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


# -- model files ----------------------------------------------------------------------------

def tiny_model(num_classes=2, size=8, num_inputs=1):
    """A small functional model: conv, global pooling, dense, softmax."""
    from imgcls_desktop.core.backend import keras_module

    keras = keras_module()
    inputs = [keras.Input((size, size, 3)) for _ in range(num_inputs)]
    x = inputs[0] if num_inputs == 1 else keras.layers.Concatenate()(inputs)
    x = keras.layers.Conv2D(2, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(num_classes)(x)
    outputs = keras.layers.Softmax()(x)
    return keras.Model(inputs if num_inputs > 1 else inputs[0], outputs)


def save_tiny_model(path, class_names, size=32):
    """An untrained tutorial CNN saved through ``model_io.save_model`` with our metadata."""
    from imgcls_desktop.core.model_io import save_model
    from imgcls_desktop.core.models import build_tutorial_cnn

    model = build_tutorial_cnn(len(class_names), size)
    metadata = {"format": "imgcls-desktop/1", "class_names": list(class_names), "image_size": [size, size],
                "preset": "tutorial_cnn"}
    return save_model(model, path, metadata)


def read_members(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info.filename) for info in archive.infolist()}


def write_members(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return Path(path)


def rewrite_config(source, target, change):
    """Copy a .keras file, letting ``change(config)`` edit its config.json."""
    members = read_members(source)
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    return write_members(target, members)


def layers_of(config):
    return config["config"]["layers"]
