"""Run a command as an unprivileged user, so permission checks bite even when tests run as root.

Root ignores folder permissions, and CI runs as root: a test that makes a folder read-only
and expects a refusal proves nothing there. ``run_as_nobody`` runs the command as the
``nobody`` account (``setpriv``) when the tests run as root, and as the current user
otherwise, who is already unprivileged.

A file the command must reach has to be reachable by ``nobody`` too: pytest's ``tmp_path``
sits under a folder only its owner may enter, so use ``nobody_folder()`` (or the
``nobody_tmp_path`` fixture in ``conftest.py``) for what the command reads and writes.

Usage::

    folder = nobody_folder(tmp_path)        # or the nobody_tmp_path fixture
    done = run_as_nobody([sys.executable, "-c", code], cwd=folder)
    assert done.returncode == 1, done.stderr
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ACCOUNT = "nobody"


def _ids():
    entry = pwd.getpwnam(ACCOUNT)
    return entry.pw_uid, entry.pw_gid


def skip_reason():
    """Why commands cannot run unprivileged here, or ``""`` when they can."""
    if os.geteuid() != 0:
        return ""
    try:
        _ids()
    except KeyError:
        return f"no '{ACCOUNT}' account to drop to"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    return ""


def nobody_folder():
    """Make a fresh folder under the system's temporary folder that ``nobody`` owns.

    The caller removes it (``shutil.rmtree``); the ``nobody_tmp_path`` fixture does.

    Returns:
        The folder's path.
    """
    folder = Path(tempfile.mkdtemp(prefix="imgcls-nobody-"))
    folder.chmod(0o755)
    if os.geteuid() == 0 and not skip_reason():
        uid, gid = _ids()
        os.chown(folder, uid, gid)
    return folder


def run_as_nobody(args, *, cwd=None, env=None, timeout=300, input=None):
    """Run ``args`` as ``nobody`` (or as the current user when that is not root).

    The environment is the current one (plus ``env``), with ``HOME`` and ``IMGCLS_DATA_DIR``
    pointed at ``cwd`` so nothing the command writes lands in root's home. Skips the
    calling test when there is no way to drop privileges.

    Args:
        args: the command line, e.g. ``[sys.executable, "-c", code]``.
        cwd: the working folder; must be reachable by ``nobody`` (see ``nobody_folder``).
        env: extra environment variables.
        timeout: seconds before the command is killed (a failure, not a hang).
        input: text for the command's stdin.

    Returns:
        The ``subprocess.CompletedProcess``, with ``stdout`` and ``stderr`` as text.
    """
    reason = skip_reason()
    if reason:
        pytest.skip(f"cannot run as an unprivileged user: {reason}")
    cwd = Path(cwd) if cwd is not None else nobody_folder()
    environment = dict(os.environ)
    environment.update({"HOME": str(cwd), "IMGCLS_DATA_DIR": str(cwd / ".imgcls-data"),
                        "PYTHONDONTWRITEBYTECODE": "1"})
    environment.update(env or {})
    command = [str(part) for part in args]
    if os.geteuid() == 0:
        uid, gid = _ids()
        command = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *command]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=timeout, input=input)


def python_as_nobody(code, **kwargs):
    """Run Python ``code`` (this interpreter, this checkout importable) as ``nobody``."""
    env = dict(kwargs.pop("env", None) or {})
    repository = str(Path(__file__).resolve().parents[1])
    env.setdefault("PYTHONPATH", os.pathsep.join(filter(None, [repository, os.environ.get("PYTHONPATH")])))
    return run_as_nobody([sys.executable, "-c", code], env=env, **kwargs)
