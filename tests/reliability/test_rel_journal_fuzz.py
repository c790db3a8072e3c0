"""Fuzzing the undo journal reader (hypothesis): issue 17, cases 1 and 2.

Generated journals (hostile paths: absolute, ``..``, through links out of the dataset and
back into it, the journal itself; wrong types, missing keys, garbage and non-UTF-8 lines,
lines cut short) are read, listed, undone and settled by ordinary moves. No file outside
the dataset (a sentinel folder beside it) may be touched, created or deleted, and nothing
but a clear refusal (:class:`ImgclsError`) may be raised. Derandomised, 100 examples,
fsync stubbed: about two seconds.
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,  # noqa: E402
)

try:  # keep hypothesis' cache out of the working tree
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "imgcls-hypothesis")
except ImportError:
    pass

from imgcls_desktop.core import data_fixes  # noqa: E402
from imgcls_desktop.core.data_fixes import (  # noqa: E402
    journal_entries,
    journal_path,
    move_to_class,
    quarantine,
    undo,
    undoable_entries,
)
from imgcls_desktop.core.errors import ImgclsError  # noqa: E402

from filesystem import snapshot  # noqa: E402
from synthetic import make_shapes_dataset  # noqa: E402

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32",
                                    reason="needs POSIX symlinks")



FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Paths an attacker (or a careless editor) would write; "{outside}" is the sentinel folder.
HOSTILE_PATHS = [
    "{outside}/secret.png", "{outside}/new.png", "{outside}", "../outside/secret.png", "../outside/made.png",
    "circle/../../outside/secret.png", "circle/link/secret.png", "circle/link/new.png", "circle/filelink.png",
    "circle/loop/circle/circle_000.png", "loop/circle/circle_000.png", ".imgcls/journal.jsonl",
    ".imgcls/journal.lock", ".imgcls/quarantine/../../../outside/secret.png", ".imgcls/quarantine/circle/q.png",
    "circle/circle_000.png", "circle/circle_001.png", "square/circle_000.png", "square/square_000.png",
    "circle/.hidden.png", "circle", "", ".", "/", "//", "circle/\x00.png", "circle/bad\udcff.png",
    "circle\\..\\..\\outside\\secret.png", "C:/outside/secret.png", "~/secret.png",
]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=6))
paths = st.one_of(st.sampled_from(HOSTILE_PATHS), st.text(max_size=12), scalars)
values = st.one_of(paths, scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=3), scalars,
                                                                                   max_size=2))
ids = st.one_of(st.sampled_from(["a", "b", "c"]), scalars)
# Chaos (any keys, any types) and plausible lines (right types, hostile paths), so that
# the search reaches the undo and settling code, not only the shape check.
chaos = st.fixed_dictionaries(
    {"id": ids, "op": st.one_of(st.sampled_from(["intent", "done", "abandoned", "intent", "??"]), scalars)},
    optional={"action": st.one_of(st.sampled_from(["move", "quarantine", "undo"]), scalars),
              "source": paths, "target": paths, "time": st.one_of(st.just("2026-01-01T00:00:00+00:00"), values),
              "class": values, "reason": values, "undoes": ids, "note": values, "from_class": values})
plausible_intent = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b", "c"]), "op": st.just("intent"),
     "action": st.sampled_from(["move", "quarantine", "undo"]), "source": st.sampled_from(HOSTILE_PATHS),
     "target": st.sampled_from(HOSTILE_PATHS), "time": st.just("2026-01-01T00:00:00+00:00"),
     "class": st.just("circle"), "undoes": st.sampled_from(["a", "b", "c"])})
plausible_outcome = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b", "c"]), "op": st.sampled_from(["done", "abandoned"]),
     "time": st.just("2026-01-01T00:00:01+00:00")})
records = st.one_of(plausible_intent, plausible_intent, plausible_outcome, chaos)
lines = st.lists(st.one_of(records.map(lambda record: json.dumps(record).encode()),
                           records.map(lambda record: json.dumps(record).encode()),
                           st.binary(max_size=24), records.map(lambda record: json.dumps(record).encode()[:-3]),
                           values.map(lambda value: json.dumps(value).encode())), max_size=8)


@pytest.fixture(scope="module")
def fuzz_template(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("fuzz_template") / "data", num_classes=2, per_class=2,
                               seed=6)


@needs_symlinks
@FUZZ
@given(journal=lines)
def test_no_journal_touches_anything_outside_or_raises(journal, fuzz_template, tmp_path_factory, monkeypatch):
    # Durability is tested elsewhere; fsync is most of the time here.
    monkeypatch.setattr(data_fixes.os, "fsync", lambda fd: None)
    monkeypatch.setattr(data_fixes, "fsync_folder", lambda folder: None)
    base = tmp_path_factory.mktemp("fuzz")
    root = Path(shutil.copytree(fuzz_template, base / "data", symlinks=True))
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes((root / "circle" / "circle_000.png").read_bytes())
    os.symlink(outside, root / "circle" / "link", target_is_directory=True)
    os.symlink(outside / "secret.png", root / "circle" / "filelink.png")
    os.symlink(root, root / "loop", target_is_directory=True)
    os.symlink(root, root / "circle" / "loop", target_is_directory=True)
    text = b"\n".join(line.replace(b"{outside}", os.fsencode(outside)) for line in journal)
    (root / ".imgcls").mkdir()
    journal_path(root).write_bytes(text + b"\n")
    before, beside = snapshot(outside), sorted(os.listdir(base))

    journal_entries(root)
    undoable_entries(root)
    for operation in (lambda: undo(root), lambda: undo(root),
                      lambda: move_to_class(root, root / "square" / "square_000.png", "circle"),
                      lambda: quarantine(root, root / "circle" / "circle_001.png"), lambda: undo(root)):
        try:
            operation()
        except ImgclsError:
            pass  # a clear refusal ("cannot undo: the file is gone") is allowed; nothing else is
    journal_entries(root)

    assert snapshot(outside) == before
    assert sorted(os.listdir(base)) == beside
