"""The core and the CLI never load Qt (napari's and Dangerzone's rule), and the modules
that must start fast never load TensorFlow."""

import pkgutil
import subprocess
import sys

import imgcls_desktop.core

CORE_MODULES = sorted(f"imgcls_desktop.core.{info.name}" for info in pkgutil.iter_modules(imgcls_desktop.core.__path__))
# Imported by the window's process and by `imgcls inspect` before any model work: TensorFlow
# (seconds to import) must not come with them.
TENSORFLOW_FREE = ["imgcls_desktop.core.dataset", "imgcls_desktop.core.images", "imgcls_desktop.core.errors",
                   "imgcls_desktop.core.defaults", "imgcls_desktop.core.paths", "imgcls_desktop.core.names",
                   "imgcls_desktop.core.output_files", "imgcls_desktop.core.training_config_io"]


def _imports_in_a_fresh_process(modules, forbidden, then=""):
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"{then}"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & {set(forbidden)!r})\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_the_walk_finds_every_core_module():
    assert len(CORE_MODULES) >= 30 and "imgcls_desktop.core.training" in CORE_MODULES
    assert set(TENSORFLOW_FREE) <= set(CORE_MODULES)


def test_core_and_cli_import_no_qt():
    result = _imports_in_a_fresh_process(
        [*CORE_MODULES, "imgcls_desktop.cli"], ("PySide6", "shiboken6"),
        then="import imgcls_desktop.cli\nimgcls_desktop.cli.build_parser()\n")
    assert result.returncode == 0, result.stdout + result.stderr


def test_fast_modules_import_no_tensorflow():
    result = _imports_in_a_fresh_process(TENSORFLOW_FREE, ("tensorflow", "keras"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_command_modules_import_no_cycle():
    """Each command module imports ``_common`` (and at most a sibling), never the package."""
    import ast
    from pathlib import Path

    import imgcls_desktop.cli

    folder = Path(imgcls_desktop.cli.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        if path.stem in ("__init__", "__main__"):
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {node.module} if node.module else {alias.name for alias in node.names}
        graph[path.stem] = imported
    assert "_common" in graph and graph["_common"] == set()
    assert all(None not in deps and "__init__" not in deps for deps in graph.values())

    def visit(name, trail):
        assert name not in trail, " -> ".join([*trail, name])
        for dependency in graph.get(name, ()):
            visit(dependency, [*trail, name])

    for name in graph:
        visit(name, [])
