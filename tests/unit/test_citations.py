"""Every section the code cites exists in the repository's docs.

Code cites project and vendor facts as ``<doc>.md §N`` (``architecture.md §3``,
``tencent.md §5``, ``zegocloud.md §1–3``, ``akool.md §5, §6``); a bare ``§`` continues the
last document named on its line. ``docs/architecture.md`` and ``docs/vendors/<vendor>.md``
number their sections ``## N. Title`` / ``### N.M Title``. A citation whose document or
section does not exist fails here, and so does a ``§`` that names no document (only RFCs may
be cited that way, as ``RFC 9113 §6.9.2``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCANNED = ("core", "gateway", "adapters", "emulators", "tests", "bench", "demo", "protos", "docs")
SUFFIXES = {".py", ".proto", ".md", ".go", ".ts", ".java", ".sh"}
GENERATED = ("clients/python/src/avatar", "gateway/v1/", "/gen/")

DOC_NAME = re.compile(r"\b([a-z][a-z0-9_-]*)\.md\b")
SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)(?:\s?[–-]\s?(\d+(?:\.\d+)*))?")
RFC = re.compile(r"RFC \d+ $")
DOC_PATH = re.compile(r"\bdocs/(?:vendors/)?[a-z0-9_-]+\.md\b")


def doc_paths() -> dict[str, Path]:
    return {p.stem: p for p in [*DOCS.glob("*.md"), *DOCS.glob("vendors/*.md")]}


def sections(path: Path) -> set[str]:
    """Section numbers of a doc: ``## 3. Title`` gives "3", ``### 3.2 Title`` gives "3.2"."""
    found = re.findall(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", path.read_text(), re.M)
    return set(found)


def source_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in (ROOT / top).rglob("*"):
            rel = str(path.relative_to(ROOT))
            if path.suffix in SUFFIXES and path.is_file() and not any(g in rel for g in GENERATED):
                files.append(path)
    files += [ROOT / "README.md", ROOT / "clients" / "README.md"]
    return sorted(files)


def citations() -> list[tuple[str, int, str, str]]:
    """(file, line, doc name or "", section) for every ``§`` in the sources."""
    out = []
    for path in source_files():
        rel = str(path.relative_to(ROOT))
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for match in SECTION.finditer(line):
                before = line[: match.start()]
                if RFC.search(before):
                    continue
                names = DOC_NAME.findall(before)
                # In a doc, a bare § is a section of that doc.
                own = path.stem if rel.startswith("docs/") else ""
                doc = names[-1] if names else own
                for number in filter(None, match.groups()):
                    out.append((rel, lineno, doc, number))
    return out


def test_docs_exist_with_numbered_sections() -> None:
    docs = doc_paths()
    for name in ("architecture", "zegocloud", "tencent", "akool"):
        assert name in docs, f"docs for {name} are missing"
        assert len(sections(docs[name])) >= 5, f"{docs[name]} has no numbered sections"


def test_the_scan_finds_the_citations() -> None:
    found = citations()
    assert len(found) > 200
    assert {doc for _, _, doc, _ in found} >= {"architecture", "zegocloud", "tencent", "akool"}


def test_every_cited_section_exists() -> None:
    docs = doc_paths()
    known = {name: sections(path) for name, path in docs.items()}
    problems = []
    for rel, lineno, doc, number in citations():
        if not doc:
            problems.append(f"{rel}:{lineno}: §{number} names no document")
        elif doc not in known:
            problems.append(f"{rel}:{lineno}: {doc}.md is not in docs/")
        elif number not in known[doc]:
            problems.append(f"{rel}:{lineno}: {doc}.md has no section {number}")
    assert not problems, "\n".join(problems)


def test_every_cited_doc_path_exists() -> None:
    problems = []
    for path in source_files():
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for match in DOC_PATH.finditer(line):
                if not (ROOT / match.group(0)).is_file():
                    problems.append(f"{path.relative_to(ROOT)}:{lineno}: {match.group(0)}")
    assert not problems, "\n".join(problems)
