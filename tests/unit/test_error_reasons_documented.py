"""Every ErrorInfo reason the code can emit is in the proto's error table, with its code.

The proto's service comment is the contract (``| REASON | CODE | metadata |``). This scans the
source of ``gateway/`` and ``adapters/`` for the places a status reason is chosen (the error
constructors of ``gateway.errors`` and the vendor code tables) and checks each constant reason
against the table: a reason added in code without documenting it fails here, before any client
sees it. Reasons of ``warning`` and ``turn_failed`` events are not status reasons and are not
built with these constructors.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

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


def emitted() -> list[tuple[str, int, str, str | None]]:
    """(file, line, reason, code) for every constant reason passed to an error constructor."""
    found = []
    for path in sorted([*ROOT.glob("gateway/*.py"), *ROOT.glob("adapters/**/*.py")]):
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
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
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                reason = arg.value
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
