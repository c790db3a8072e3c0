"""The packaged app: build.spec's helpers and the frozen layout (fast), the real build (slow).

The build test is marked ``build`` and skipped by the default run; run it with
``pytest -m build tests/test_packaging.py`` (about 10-20 minutes on 2 cores, several GB of
disk). It runs ``scripts/build_app.sh``, which builds ``dist/imgcls-desktop/`` in a clean
venv and smoke-tests a copy of it outside the source tree.
"""

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import imgcls_desktop
from imgcls_desktop import frozen, resources

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "build.spec"


def _spec_function(name):
    """One function from build.spec, compiled alone (the spec itself needs PyInstaller)."""
    tree = ast.parse(SPEC.read_text(encoding="utf-8"))
    [node] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    namespace = {"ast": ast, "Path": Path}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(SPEC), "exec"), namespace)
    return namespace[name]


def test_spec_reads_the_package_version():
    read_version = _spec_function("read_version")
    assert read_version(ROOT / "imgcls_desktop" / "__init__.py") == imgcls_desktop.__version__


def test_spec_version_reader_parses_without_importing(tmp_path):
    init = tmp_path / "__init__.py"
    init.write_text('"""Doc."""\nimport does_not_exist\n__version__ = "9.8.7"\nAPP_NAME = "x"\n')
    assert _spec_function("read_version")(init) == "9.8.7"
    init.write_text("APP_NAME = 'x'\n")
    with pytest.raises(SystemExit):
        _spec_function("read_version")(init)


def test_bundle_filter_keeps_every_feature_and_drops_what_it_lists():
    # build.spec's drop and strip rules on a made-up table of contents: the desktop Qt
    # platforms, the sample dataset and TensorFlow's libraries stay; embedded back ends,
    # translations, the XLA op library and dependencies' test data go.
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bundle_filter
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    bundle_filter._check()
    assert not bundle_filter.dropped("resources/sample_dataset/test/glass/a.jpg")
    assert bundle_filter.dropped("matplotlib/mpl-data/sample_data/grace_hopper.jpg")


def test_spec_bundles_resources_and_two_executables():
    text = SPEC.read_text(encoding="utf-8")
    assert '"resources"), "resources")' in text
    assert 'APP_NAME = "imgcls-desktop"' in text and 'CLI_NAME = "imgcls"' in text
    assert "console=False" in text and "console=True" in text
    assert "upx=True" not in text


def test_resources_resolve_inside_the_bundle_when_frozen(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resource_root() == tmp_path / "resources"
    assert resources.sample_dataset_path() == tmp_path / "resources" / "sample_dataset"
    assert resources.resource_path("icon.png") == tmp_path / "resources" / "icon.png"


def test_resources_resolve_to_the_checkout_from_source(monkeypatch):
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    assert resources.resource_root() == ROOT / "resources"
    assert (resources.sample_dataset_path() / "PROVENANCE.md").is_file()


def test_prepare_process_makes_missing_streams_writable(monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    frozen.prepare_process()
    try:
        print("nobody reads this")
        print("nor this", file=sys.stderr)
        assert sys.stdout.name == os.devnull and sys.stderr.name == os.devnull
    finally:
        sys.stdout.close()
        sys.stderr.close()


def test_prepare_process_keeps_existing_streams():
    before = sys.stdout, sys.stderr
    frozen.prepare_process()
    assert (sys.stdout, sys.stderr) == before


def test_frozen_matplotlib_cache_lasts_in_the_user_data_folder(monkeypatch, tmp_path):
    # PyInstaller's runtime hook sets a temporary MPLCONFIGDIR: the font cache must survive.
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "bundle"), raising=False)
    monkeypatch.setenv("IMGCLS_DATA_DIR", str(tmp_path / "userdata"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "pyinstaller-temp"))
    frozen.prepare_process()
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "userdata" / "matplotlib")
    assert (tmp_path / "userdata" / "matplotlib").is_dir()


def test_process_age_prefers_the_launch_time(monkeypatch):
    monkeypatch.setenv("IMGCLS_LAUNCH_TIME", str(time.time() - 5))
    assert 4.5 < frozen.process_age_seconds() < 60


def test_process_age_without_launch_time_is_plausible(monkeypatch):
    monkeypatch.delenv("IMGCLS_LAUNCH_TIME", raising=False)
    assert 0 < frozen.process_age_seconds() < 7 * 24 * 3600


@pytest.mark.build
def test_build_and_smoke_test_the_bundle():
    args = ["--reuse-venv"] if os.environ.get("IMGCLS_BUILD_REUSE_VENV") else []
    completed = subprocess.run(["bash", str(ROOT / "scripts" / "build_app.sh"), *args], cwd=ROOT,
                               capture_output=True, text=True, timeout=3 * 3600)
    tail = (completed.stdout[-6000:] + "\n" + completed.stderr[-4000:])
    report = json.loads((ROOT / "build" / "packaging-report.json").read_text(encoding="utf-8"))
    assert completed.returncode == 0, tail
    assert report["ok"], report["checks"]
    assert all(report["checks"].values()), report["checks"]
    assert report["self_test"]["ok"] is True
    assert report["self_test"]["predictions"], report["self_test"]
    assert report["predicted_images"] >= 3
    assert report["written_inside_bundle"] == []
    assert (ROOT / "dist" / "imgcls-desktop" / "_internal" / "resources" / "sample_dataset").is_dir()
