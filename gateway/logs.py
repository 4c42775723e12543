"""structlog configuration: JSON lines in production, console rendering on a TTY.

Context (session_id, vendor, turn_id) is bound with ``structlog.contextvars`` in the
servicer before the Drive tasks start, so every line of a stream carries it (asyncio
tasks copy the context when created). Secrets never reach the logs: settings hold them as
``SecretStr`` and :func:`redact` masks known secret query parameters in URLs.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_QUERY = re.compile(r"(?i)((?:token|signature|secret|sig|key|accesstoken)=)[^&\s\"']+")


def redact(text: str) -> str:
    """Mask the values of secret-looking query parameters (``Token=``, ``signature=``...)."""
    return _SECRET_QUERY.sub(r"\1***", text)


def _redact_processor(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str) and "=" in value:
            event_dict[key] = redact(value)
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog (and stdlib logging) once per process.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        fmt: ``json``, ``console`` or ``auto`` (console when stderr is a TTY).
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
