"""File names that are not valid UTF-8: carried through every output, never a crash.

On Linux a file name is a string of bytes, and ``bad\\xff\\xfe.jpg`` is legal. Python hands
such a name over as a ``str`` decoded with ``surrogateescape`` (:func:`os.fsdecode`): each
byte 0xNN that is not valid UTF-8 becomes the lone surrogate U+DCNN, and
:func:`os.fsencode` gives the original bytes back. That ``str`` opens the file, but
encoding it as UTF-8 raises ``UnicodeEncodeError``: printing it to a UTF-8 terminal, or
writing it to a CSV or a JSON file written with ``ensure_ascii=False``, fails.

The documented escapes, one per kind of output:

* **JSON** (the move journal, ``--json`` documents, run records): the name is kept as that
  same ``str``; each lone surrogate is written as the JSON escape ``\\udcNN``. The file
  stays valid UTF-8 and valid JSON, and ``os.fsencode(json.loads(text)[...])`` is the
  original bytes again: lossless. :func:`json_text` writes JSON this way while keeping
  other non-ASCII characters readable (``json.dumps`` with its default ``ensure_ascii=True``
  is lossless too, only less readable).
* **Text for people** (terminal lines, messages, CSV cells): :func:`display_name` shows each
  undecodable byte as ``\\xNN``, as Python's ``backslashreplace`` does, so the name prints
  as ``bad\\xff\\xfe.jpg``. Control characters (a newline, an escape sequence that would
  drive the terminal) are shown the same way. That text is for reading; open files by
  their path, not by it.

Qt-free and dependency-free, so core, the CLI and the window can all use it.
"""

import json
import os
import re
from typing import Any

# Lone surrogates (what surrogateescape makes of undecodable bytes, or what Windows can
# hand over from ill-formed UTF-16), C0 controls and DEL.
_UNSAFE_FOR_PEOPLE = re.compile("[\ud800-\udfff\x00-\x1f\x7f]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown(match):
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, escaped by os.fsdecode
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def display_name(path: str | bytes | os.PathLike) -> str:
    """``path`` as text that any terminal, log or CSV cell can take (see the module docstring).

    Args:
        path: A ``str``, ``bytes`` or path-like file name.

    Returns:
        The name with each undecodable byte and control character written as ``\\xNN``
        (other lone surrogates as ``\\uXXXX``); a valid UTF-8 name without control
        characters comes back unchanged.
    """
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return _UNSAFE_FOR_PEOPLE.sub(_shown, text)


def json_text(value: Any, **kwargs: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **kwargs)``, lossless for any file name.

    Lone surrogates (undecodable bytes of a name) are written as ``\\udcNN`` escapes, so
    the result encodes to valid UTF-8 and ``json.loads`` gives back the very same strings.

    Args:
        value: What to write as JSON.
        **kwargs: Passed on to ``json.dumps`` (``indent``, ``sort_keys``...).

    Returns:
        The JSON text.
    """
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
