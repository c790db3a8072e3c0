"""The core and the CLI never load Qt (napari's and Dangerzone's rule)."""

import subprocess
import sys


def test_core_and_cli_import_no_qt():
    code = (
        "import sys, imgcls_desktop.cli, imgcls_desktop.core.training, imgcls_desktop.core.evaluation, "
        "imgcls_desktop.core.model_io, imgcls_desktop.core.inference, imgcls_desktop.core.dataset; "
        "imgcls_desktop.cli.build_parser(); "
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'shiboken6'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dataset_scanner_imports_no_tensorflow():
    code = (
        "import sys, imgcls_desktop.core.dataset, imgcls_desktop.core.images; "
        "sys.exit(1 if 'tensorflow' in sys.modules or 'keras' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
