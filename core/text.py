"""Text splitting for vendor text drives, shared by every adapter.

Vendors cap one text request: ZEGO DriveByText 1800 characters (zegocloud.md §4), Tencent SEND_TEXT
4000 bytes (tencent.md §5), Akool data-channel messages ~950 encoded bytes (akool.md §5). Long text
is split
at sentence boundaries, then at clause boundaries, then at spaces, and only as a last resort
inside a word, so the avatar never pauses mid-word.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Sentence ends in Latin and CJK scripts, keeping the punctuation with the sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?…;])\s+|(?<=[。！？；])")
_CLAUSE_END = re.compile(r"(?<=[,，、:：])\s*")


def _fits(text: str, max_chars: int, max_bytes: int | None) -> bool:
    if len(text) > max_chars:
        return False
    return max_bytes is None or len(text.encode("utf-8")) <= max_bytes


def _hard_split(text: str, max_chars: int, max_bytes: int | None) -> list[str]:
    parts: list[str] = []
    current = ""
    for word in re.split(r"(\s+)", text):
        if _fits(current + word, max_chars, max_bytes):
            current += word
            continue
        if current.strip():
            parts.append(current.strip())
        current = word.lstrip()
        while not _fits(current, max_chars, max_bytes):
            cut = max_chars
            while not _fits(current[:cut], max_chars, max_bytes):
                cut -= 1
            parts.append(current[:cut])
            current = current[cut:]
    if current.strip():
        parts.append(current.strip())
    return parts


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Split after each match of ``pattern``, keeping every character (separators included)."""
    pieces: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def split_text(text: str, max_chars: int, max_bytes: int | None = None) -> list[str]:
    """Split ``text`` into parts of at most ``max_chars`` characters and ``max_bytes`` bytes.

    Parts are whole sentences packed greedily; a sentence longer than the limit is split at
    clauses, then words. The text between parts is kept as written (no spaces are added to
    CJK text), and each part is stripped. Whitespace-only input gives ``[]``.

    Args:
        text: the text.
        max_chars: characters per part (> 0).
        max_bytes: UTF-8 bytes per part, when the vendor counts bytes.
    """
    text = text.strip()
    if not text:
        return []
    if _fits(text, max_chars, max_bytes):
        return [text]
    units: list[str] = []
    for sentence in _cut(text, _SENTENCE_END):
        if _fits(sentence.strip(), max_chars, max_bytes):
            units.append(sentence)
            continue
        for clause in _cut(sentence, _CLAUSE_END):
            if _fits(clause.strip(), max_chars, max_bytes):
                units.append(clause)
            else:
                units.extend(p + " " for p in _hard_split(clause, max_chars, max_bytes))
    parts: list[str] = []
    current = ""
    for unit in units:
        if _fits((current + unit).strip(), max_chars, max_bytes):
            current += unit
        else:
            if current.strip():
                parts.append(current.strip())
            current = unit
    if current.strip():
        parts.append(current.strip())
    return parts


def utf8_len(text: str) -> int:
    """UTF-8 size of ``text`` in bytes."""
    return len(text.encode("utf-8"))


def split_exact(text: str, max_size: int, measure: Callable[[str], int] = utf8_len) -> list[str]:
    """Split ``text`` into pieces of at most ``max_size`` by ``measure``, keeping every character.

    Unlike :func:`split_text` nothing is stripped or added: the pieces concatenate back to
    ``text``. For streamed LLM deltas, which vendors join exactly as sent (Akool akool.md §5,
    Tencent SEND_STREAMTEXT tencent.md §5). Cuts go after the last whitespace that fits, else
    mid-word.

    Args:
        text: the text.
        max_size: largest piece, in the units of ``measure`` (default UTF-8 bytes).
        measure: size of a string (e.g. its JSON-escaped byte length).
    """
    pieces: list[str] = []
    start = 0
    size = 0
    last_space = -1
    for i, char in enumerate(text):
        char_size = measure(char)
        # A whitespace cut can leave a tail that still does not fit with this character:
        # then the tail (one word, no whitespace in it) is cut here, mid-word.
        while size + char_size > max_size and i > start:
            cut = last_space + 1 if last_space >= start else i
            pieces.append(text[start:cut])
            start = cut
            size = measure(text[start:i])
            last_space = -1
        size += char_size
        if char.isspace():
            last_space = i
    if start < len(text):
        pieces.append(text[start:])
    return pieces


class SentenceBuffer:
    """Buffers streamed text (LLM deltas) and releases whole sentences.

    For vendors without streaming text (ZEGO): the gateway feeds every delta to
    :meth:`push` and sends what comes out, so the avatar starts on the first sentence
    instead of waiting for the whole reply. :meth:`flush` releases the rest at the end of
    the turn. Released pieces are already split to the vendor's limits.
    """

    def __init__(self, max_chars: int, max_bytes: int | None = None, min_chars: int = 1) -> None:
        self.max_chars = max_chars
        self.max_bytes = max_bytes
        self.min_chars = min_chars
        self._buffer = ""

    def push(self, delta: str) -> list[str]:
        """Add a delta; return the complete sentences it finishes (possibly none)."""
        self._buffer += delta
        cut = -1
        for match in _SENTENCE_END.finditer(self._buffer):
            if match.start() >= self.min_chars:
                cut = match.start()
        if cut < 0 and _fits(self._buffer, self.max_chars, self.max_bytes):
            return []
        if cut < 0:
            # No sentence end yet, but over the limit: release what fits, keep the tail.
            parts = split_text(self._buffer, self.max_chars, self.max_bytes)
            self._buffer = parts.pop() if parts else ""
            return parts
        ready, self._buffer = self._buffer[:cut], self._buffer[cut:].lstrip()
        return split_text(ready, self.max_chars, self.max_bytes)

    def flush(self) -> list[str]:
        """Return everything still buffered, split to the limits, and empty the buffer."""
        rest, self._buffer = self._buffer, ""
        return split_text(rest, self.max_chars, self.max_bytes)

    def clear(self) -> None:
        """Drop buffered text (interrupt)."""
        self._buffer = ""
