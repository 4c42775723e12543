"""Marked blocks of ``bench/RESULTS.md``: each tool rewrites its own block, nothing else.

A block runs from its ``<!-- BEGIN name -->`` line to its ``<!-- END name -->`` line, both
included; the hand-written text around the blocks is left as it is.
"""

from __future__ import annotations

from pathlib import Path


def replace_block(text: str, begin: str, end: str, block: str) -> str:
    """``text`` with its ``begin`` ... ``end`` block replaced by ``block``.

    ``block`` carries its own markers. When ``text`` has no such block, ``block`` is
    appended after a blank line.
    """
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    return text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"


def write_block(path: Path, begin: str, end: str, block: str, *, new_file: str = "") -> None:
    """Rewrite the ``begin`` ... ``end`` block of the file ``path`` (see :func:`replace_block`).

    ``new_file`` is the text a missing (or empty) file starts with, before the block.
    """
    text = path.read_text() if path.exists() else ""
    path.write_text(replace_block(text or new_file, begin, end, block))
