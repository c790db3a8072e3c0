"""The shared image loader: every mode, every bad file, never a raw Pillow exception."""

import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

from imgcls_desktop.core import images
from imgcls_desktop.core.errors import ImageError
from imgcls_desktop.core.images import (
    ALLOWED_FORMATS,
    MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    is_ignored_name,
    load_image,
    open_image,
    validate_image,
)


def _rgb(path, size=(24, 16), colour=(200, 30, 60), **save_options):
    Image.new("RGB", size, colour).save(path, **save_options)
    return path


def _reason(path):
    with pytest.raises(ImageError) as caught:
        open_image(path)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    return caught.value.reason


def _peek(path, attribute):
    with Image.open(path) as image:
        return getattr(image, attribute)


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def test_constants():
    assert SUPPORTED_EXTENSIONS == {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    assert set(ALLOWED_FORMATS) == {"JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF", "MPO"}
    assert MAX_PIXELS == 50_000_000
    from PIL import ImageFile
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("name", [".DS_Store", "thumbs.db", "Thumbs.db", "DESKTOP.INI", "._photo.jpg",
                                  ".hidden", "__MACOSX", "__macosx"])
def test_ignored_names(name):
    assert is_ignored_name(name)


@pytest.mark.parametrize("name", ["photo.jpg", "cat", "_MACOSX", "thumbs.db.jpg", "a.DS_Store.png"])
def test_not_ignored_names(name):
    assert not is_ignored_name(name)


def test_rgb_png_round_trip(tmp_path):
    path = _rgb(tmp_path / "a.png")
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (24, 16)
    assert image.getpixel((3, 3)) == (200, 30, 60)


def test_16bit_png_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert _peek(path, "mode").startswith("I")
    array = np.asarray(open_image(path))
    assert array.shape == (1, 4, 3)
    assert array[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()


def test_16bit_tiff_scaled(tmp_path):
    path = tmp_path / "deep.tif"
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(path)
    assert np.asarray(open_image(path))[0, 0].tolist() == [128, 128, 128]


def test_32bit_int_image_uses_16bit_range(tmp_path):
    path = tmp_path / "int.tif"
    Image.fromarray(np.array([[0, 65535, 70000, -5]], dtype=np.int32), "I").save(path)
    assert np.asarray(open_image(path))[0, :, 0].tolist() == [0, 255, 255, 0]


@pytest.mark.parametrize("scale, expected", [(1.0, 128), (255.0, 128), (65535.0, 128)])
def test_float_image_scaled_by_its_range(tmp_path, scale, expected):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32) * np.float32(scale), "F").save(path)
    row = np.asarray(open_image(path))[0, :, 0].tolist()
    assert row == [0, expected, 255]


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink
    assert _peek(path, "mode") == "CMYK"
    red, green, blue = open_image(path).getpixel((8, 8))
    assert red > 230 and green < 30 and blue < 30


def test_palette_with_transparency_over_white(tmp_path):
    palette_image = Image.new("P", (4, 4), 0)
    palette_image.putpalette([0, 0, 0] + [10, 200, 10] * 255)  # index 0 black, 1 green
    palette_image.putpixel((0, 0), 1)
    path = tmp_path / "pal.png"
    palette_image.save(path, transparency=0)
    image = open_image(path)
    assert image.getpixel((1, 1)) == (255, 255, 255)  # transparent black shows as white
    assert image.getpixel((0, 0)) == (10, 200, 10)


def test_palette_without_transparency(tmp_path):
    path = tmp_path / "pal.bmp"
    palette_image = Image.new("P", (4, 4), 1)
    palette_image.putpalette([0, 0, 0, 10, 20, 30] + [0, 0, 0] * 254)
    palette_image.save(path)
    assert _peek(path, "mode") == "P"
    assert open_image(path).getpixel((0, 0)) == (10, 20, 30)


def test_rgba_composited_over_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    path = tmp_path / "alpha.png"
    rgba.save(path)
    image = open_image(path)
    assert image.getpixel((2, 2)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (0, 0, 255)
    assert all(120 <= channel <= 135 for channel in image.getpixel((1, 0)))


def test_la_composited_over_white(tmp_path):
    path = tmp_path / "la.png"
    Image.new("LA", (3, 3), (0, 0)).save(path)
    assert open_image(path).getpixel((1, 1)) == (255, 255, 255)


@pytest.mark.parametrize("mode, value, expected", [("L", 77, (77, 77, 77)), ("1", 1, (255, 255, 255))])
def test_grayscale_and_bilevel(tmp_path, mode, value, expected):
    path = tmp_path / f"g_{mode}.png"
    Image.new(mode, (5, 5), value).save(path)
    image = open_image(path)
    assert image.mode == "RGB" and image.getpixel((2, 2)) == expected


def test_exif_orientation_6_rotates(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    upright = open_image(path)
    assert upright.size == (20, 40)
    assert upright.getpixel((10, 2))[0] > 200  # left edge went to the top
    assert upright.getpixel((10, 37))[0] < 50
    assert load_image(path, (40, 20)).shape == (40, 20, 3)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert _peek(path, "n_frames") == 3
    assert open_image(path).getpixel((4, 4)) == (255, 0, 0)


def test_multipage_tiff_first_page(tmp_path):
    pages = [Image.new("RGB", (6, 6), (0, 200, 0)), Image.new("RGB", (9, 9), (200, 0, 0))]
    path = tmp_path / "pages.tiff"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert _peek(path, "n_frames") == 2
    image = open_image(path)
    assert image.size == (6, 6) and image.getpixel((1, 1)) == (0, 200, 0)


def test_webp_and_uppercase_extension(tmp_path):
    webp = _rgb(tmp_path / "x.webp", colour=(0, 0, 250), lossless=True)
    upper = _rgb(tmp_path / "PHOTO.JPG", colour=(0, 0, 250), format="JPEG", quality=95)
    assert open_image(webp).getpixel((2, 2)) == (0, 0, 250)
    assert open_image(upper).getpixel((2, 2))[2] > 240


def test_mpo_is_allowed(tmp_path):
    frames = [Image.new("RGB", (8, 8), (250, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 250))]
    path = tmp_path / "stereo.jpg"
    frames[0].save(path, format="MPO", save_all=True, append_images=frames[1:])
    assert _peek(path, "format") == "MPO"
    assert open_image(path).getpixel((4, 4))[0] > 240


def test_load_image_shape_dtype_and_squash(tmp_path):
    path = _rgb(tmp_path / "wide.png", size=(100, 10))
    array = load_image(path, (32, 48))
    assert array.shape == (32, 48, 3) and array.dtype == np.uint8
    assert array[0, 0].tolist() == [200, 30, 60]
    assert load_image(path, None).shape == (10, 100, 3)
    assert validate_image(path) == (100, 10)


def test_load_image_matches_open_image_resize(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)).save(path)
    expected = np.asarray(open_image(path).resize((12, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(load_image(path, (16, 12)), expected)


def test_missing_file(tmp_path):
    assert _reason(tmp_path / "nope.jpg") == "file not found"


def test_folder_is_not_an_image(tmp_path):
    (tmp_path / "dir.png").mkdir()
    assert "folder" in _reason(tmp_path / "dir.png")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    assert _reason(path) == "empty file (0 bytes)"


@pytest.mark.parametrize("name, cut", [("cut.jpg", 0.6), ("cut.png", 0.6), ("head.png", 0.1)])
def test_truncated_files(tmp_path, name, cut):
    rng = np.random.default_rng(1)
    full = tmp_path / f"full_{name}"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * cut)])
    reason = _reason(path)
    assert "damaged or truncated" in reason or "not an image" in reason


def test_truncated_jpeg_says_damaged(tmp_path):
    rng = np.random.default_rng(2)
    full = tmp_path / "full.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full, quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(full.read_bytes()[:-2000])
    assert _reason(path) == images.DAMAGED


def test_png_with_bad_crc(tmp_path):
    path = _rgb(tmp_path / "crc.png")
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the IDAT chunk
    path.write_bytes(bytes(data))
    assert "damaged" in _reason(path)


def test_text_renamed_to_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my notes, not a photo\n" * 10)
    assert _reason(path).startswith("not an image file")


def test_eps_renamed_png_refused_without_ghostscript(tmp_path, monkeypatch):
    calls = []

    def no_subprocess(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a subprocess was started")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(subprocess, "check_call", no_subprocess)
    from PIL import EpsImagePlugin
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_subprocess)
    data = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n%%EOF\n"
    assert EpsImagePlugin._accept(data)  # Pillow would take it for EPS without the allowlist
    path = tmp_path / "vector.png"
    path.write_bytes(data)
    assert _reason(path).startswith("not an image file")
    assert calls == []


def _bomb_png(path, width, height):
    # A real header claiming a huge canvas, a few bytes of compressed data: decoding
    # would allocate width*height*3 bytes, so it must be refused before load().
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                     + _png_chunk(b"IEND", b""))
    return path


def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    path = _bomb_png(tmp_path / "bomb.png", 30000, 30000)
    assert path.stat().st_size < 2000
    loads = []
    from PIL import ImageFile
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self) or None)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or None)
    reason = _reason(path)
    assert reason.startswith("image is too large") and "50 million" in reason
    assert loads == []


@pytest.mark.parametrize("width, height", [(10000, 6000), (12000, 8000)])  # ours alone; ours + Pillow's warning
def test_pixel_cap_below_pillow_limit(tmp_path, width, height):
    path = _bomb_png(tmp_path / "big.png", width, height)
    assert _reason(path) == f"image is too large ({width} x {height} pixels; the limit is 50 million)"


def test_pillow_warning_never_escapes(tmp_path, recwarn):
    path = _bomb_png(tmp_path / "big.png", 12000, 8000)  # above Pillow's warning threshold
    with pytest.raises(ImageError):
        open_image(path)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_random_bytes_never_raise_raw_exceptions(tmp_path):
    rng = np.random.default_rng(3)
    good = _rgb(tmp_path / "good.png").read_bytes()
    for index in range(40):
        data = bytearray(good)
        for position in rng.integers(8, len(data), size=4):
            data[position] = int(rng.integers(0, 256))
        path = tmp_path / f"fuzz_{index}.png"
        path.write_bytes(bytes(data))
        try:
            open_image(path)
        except ImageError as exc:
            assert exc.reason
