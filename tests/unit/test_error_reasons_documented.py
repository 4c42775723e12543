"""Every ErrorInfo reason the code can emit is in the proto's error table, with its code.

The proto's service comment is the contract (``| REASON | CODE | metadata |``). The
``core.errors.Reason`` enum must be exactly that table. This scans the source of ``core/``,
``gateway/`` and ``adapters/`` for the places a status reason is chosen (the error constructors
of ``core.errors`` and the vendor code tables) and checks each reason against the table with
its code: a reason added in code without documenting it fails here, before any client sees
it. Reasons of ``warning`` and ``turn_failed`` events are ``core.errors.EventReason`` and are
not built with these constructors.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from core.errors import EventReason, Reason

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "protos" / "avatar" / "gateway" / "v1" / "avatar_gateway_service.proto"

# Constructor -> (index of the reason argument, the status code it implies or None when the
# code is the first argument).
CONSTRUCTORS: dict[str, tuple[int, str | None]] = {
    "invalid_argument": (0, "INVALID_ARGUMENT"),
    "failed_precondition": (0, "FAILED_PRECONDITION"),
    "GatewayError": (1, None),
    "VendorError": (1, None),
    "VendorCodeRule": (1, None),
    "_rule": (1, None),
}


def documented() -> dict[str, str]:
    rows = re.findall(r"^// \| ([A-Z][A-Z0-9_]*) +\| ([A-Z_]+) +\|", PROTO.read_text(), re.M)
    return dict(rows)


def reason_of(node: ast.expr) -> str | None:
    """The reason a literal or ``Reason.X`` expression names, else ``None``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("Reason", "EventReason")
    ):
        return node.attr
    return None


def emitted() -> list[tuple[str, int, str, str | None]]:
    """(file, line, reason, code) for every constant reason passed to an error constructor."""
    found = []
    for path in sorted(
        p for d in ("core", "gateway", "adapters") for p in ROOT.glob(f"{d}/**/*.py")
    ):
        tree = ast.parse(path.read_text())
        constants = {
            target.id: reason
            for node in tree.body
            if isinstance(node, ast.Assign) and (reason := reason_of(node.value)) is not None
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name not in CONSTRUCTORS or len(node.args) <= CONSTRUCTORS[name][0]:
                continue
            index, code = CONSTRUCTORS[name]
            arg = node.args[index]
            if (constant := reason_of(arg)) is not None:
                reason = constant
            elif isinstance(arg, ast.Name) and arg.id in constants:
                reason = constants[arg.id]
            else:
                continue  # a variable: the table it comes from is checked where it is built
            if code is None and isinstance(node.args[0], ast.Attribute):
                code = node.args[0].attr
            found.append((str(path.relative_to(ROOT)), node.lineno, reason, code))
    return found


def test_the_scan_sees_the_reasons_of_every_layer() -> None:
    reasons = {reason for _, _, reason, _ in emitted()}
    # Servicer/drive, sessions, and each vendor's code table.
    assert {"CONFIG_NOT_FIRST", "CHUNK_TOO_LARGE", "SESSION_CLOSED", "DRIVE_PREEMPTED"} <= reasons
    assert {"VENDOR_AUTH_FAILED", "VENDOR_RATE_LIMITED", "AVATAR_NOT_FOUND"} <= reasons
    assert len(documented()) >= 25


def test_every_emitted_reason_is_documented_with_its_code() -> None:
    table = documented()
    problems = []
    for path, line, reason, code in emitted():
        if reason not in table:
            problems.append(f"{path}:{line}: {reason} ({code}) is not in the proto's table")
        elif code is not None and table[reason] != code:
            problems.append(f"{path}:{line}: {reason} is {code}, the table says {table[reason]}")
    assert not problems, "\n".join(problems)


def test_the_reason_enum_is_the_table() -> None:
    assert {r.value for r in Reason} == set(documented())
    assert not {r.value for r in EventReason} & set(documented()), "event reasons are not statuses"


def test_no_reason_is_spelled_as_a_string_literal() -> None:
    # Reasons are compared and passed as enum members, so a typo is an AttributeError at
    # import time (and a mypy error) rather than a silently wrong status.
    names = {r.value for r in Reason} | {r.value for r in EventReason}
    found = []
    for path in sorted(
        p for d in ("core", "gateway", "adapters") for p in ROOT.glob(f"{d}/**/*.py")
    ):
        if path.name == "errors.py" and path.parent.name == "core":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)
