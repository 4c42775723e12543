"""One log stream: our structlog lines and every library's stdlib lines, one shape, one renderer.

Each case runs ``configure_logging`` in a fresh interpreter and reads its stderr, as the
gateway process writes it (the test process keeps the logging conftest gave it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
SHAPE = {"event", "level", "logger", "timestamp"}


def run(script: str) -> str:
    """Run ``script`` (after ``configure_logging`` is importable) and return its stderr."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "clients/python/src")])
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def json_lines(stderr: str) -> list[dict[str, Any]]:
    # Every line must be JSON: a plain-text line fails here.
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def test_library_lines_are_json_of_the_same_shape_and_level_rules() -> None:
    lines = json_lines(
        run(
            """
            import logging, structlog
            from gateway.logs import configure_logging
            configure_logging("info", "json")
            structlog.get_logger("gateway.test").info("ours", detail=1)
            logging.getLogger("websockets").warning("theirs %s", "formatted")
            logging.getLogger("aiohttp.client").info("library info is held back")
            logging.getLogger("grpc").error("library error")
            structlog.get_logger("gateway.test").debug("our debug is below info")
            """
        )
    )
    assert [line["event"] for line in lines] == ["ours", "theirs formatted", "library error"]
    ours, theirs, error = lines
    assert set(ours) == SHAPE | {"detail"}
    assert set(theirs) == SHAPE and set(error) == SHAPE
    assert (ours["logger"], theirs["logger"], error["logger"]) == (
        "gateway.test",
        "websockets",
        "grpc",
    )
    assert (ours["level"], theirs["level"], error["level"]) == ("info", "warning", "error")
    assert theirs["timestamp"].endswith("Z")


def test_debug_level_is_ours_only_and_reconfiguring_keeps_one_handler() -> None:
    lines = json_lines(
        run(
            """
            import logging, structlog
            from gateway.logs import configure_logging
            configure_logging("info", "json")
            configure_logging("debug", "json")
            structlog.get_logger("gateway.test").debug("our debug")
            logging.getLogger("websockets.client").debug("library debug")
            logging.getLogger("websockets.client").warning("once")
            """
        )
    )
    assert [line["event"] for line in lines] == ["our debug", "once"]


def test_lines_inside_a_span_carry_its_trace_and_span_ids() -> None:
    lines = json_lines(
        run(
            """
            import logging, structlog
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from gateway.logs import configure_logging
            configure_logging("info", "json")
            tracer = TracerProvider().get_tracer("test")
            log = structlog.get_logger("gateway.test")
            with tracer.start_as_current_span("outer") as span:
                ctx = span.get_span_context()
                log.info("ids", want_trace=f"{ctx.trace_id:032x}", want_span=f"{ctx.span_id:016x}")
                logging.getLogger("livekit").warning("library inside")
            log.info("outside")
            logging.getLogger("livekit").warning("library outside")
            """
        )
    )
    ids, library, outside, library_outside = lines
    assert len(ids["trace_id"]) == 32 and len(ids["span_id"]) == 16
    assert (ids["trace_id"], ids["span_id"]) == (ids["want_trace"], ids["want_span"])
    assert (library["trace_id"], library["span_id"]) == (ids["trace_id"], ids["span_id"])
    assert "trace_id" not in outside and "span_id" not in outside
    assert "trace_id" not in library_outside


def test_secret_masking_and_context_apply_to_library_lines_and_exceptions() -> None:
    lines = json_lines(
        run(
            """
            import logging, structlog
            from gateway.logs import configure_logging
            configure_logging("info", "json")
            structlog.contextvars.bind_contextvars(session_id="s-1")
            logging.getLogger("httpx").warning(
                "GET https://vendor/?appkey=a1&signature=SIGVALUE&timestamp=1"
            )
            try:
                raise RuntimeError("wss://vendor/ws?Token=TOKENVALUE")
            except RuntimeError:
                logging.getLogger("websockets").exception("connect failed")
            structlog.get_logger("gateway.test").info("ours", url="https://x/?Signature=SIG2")
            """
        )
    )
    library, failed, ours = lines
    assert library["event"] == "GET https://vendor/?appkey=***&signature=***&timestamp=1"
    assert library["session_id"] == "s-1"
    assert "Token=***" in failed["exception"] and "TOKENVALUE" not in failed["exception"]
    assert "RuntimeError" in failed["exception"] and failed["session_id"] == "s-1"
    assert ours["url"] == "https://x/?Signature=***"


def test_python_warnings_and_console_rendering_use_the_same_stream() -> None:
    stderr = run(
        """
        import logging, warnings
        from gateway.logs import configure_logging
        configure_logging("info", "json")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
        configure_logging("info", "console")
        logging.getLogger("websockets").warning("rendered for a terminal")
        """
    )
    first, console = stderr.strip().split("\n", 1)[0], stderr.strip().splitlines()[-1]
    warning = json.loads(first)
    assert warning["logger"] == "py.warnings" and "deprecated thing" in warning["event"]
    # ConsoleRenderer's line: level and logger name in columns, not a JSON object.
    assert not console.startswith("{")
    assert "rendered for a terminal" in console and "websockets" in console
