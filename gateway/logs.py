"""One log stream: every logger, ours and the libraries', rendered by structlog.

Our structlog loggers and every standard-library logger (grpc, aiohttp, websockets, livekit,
httpx, opentelemetry, ``py.warnings``...) go to one handler on the root logger whose
formatter is structlog's :class:`~structlog.stdlib.ProcessorFormatter`: the same processors
(timestamp, level, logger name, context, trace ids, secret masking) and the same renderer,
JSON lines in production and console rendering on a TTY (docs/architecture.md §7).

Context (session_id, vendor, turn_id) is bound with ``structlog.contextvars`` in the
servicer before the Drive tasks start, so every line of a stream carries it (asyncio
tasks copy the context when created); a library's line written in that context carries it
too. A line written inside an OpenTelemetry span carries its ``trace_id`` and ``span_id``
(W3C hex). Secrets never reach the logs: settings hold them as ``SecretStr`` and
:func:`redact` masks known secret query parameters in every string value of every line,
exception text included.

Levels: our structlog loggers log at the configured level; the libraries' loggers at
``warning`` or above (their debug and info lines would drown ours, and some carry frame
contents).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

_SECRET_QUERY = re.compile(r"(?i)((?:token|signature|secret|sig|key|accesstoken)=)[^&\s\"']+")

# The stdlib loggers our structlog loggers were given the gateway's level on (see
# _LevelledLoggerFactory), so that a second configure_logging can set them again.
_structlog_loggers: set[str] = set()
# The root handler configure_logging installed: replaced, not added to, on a second call
# (other handlers, such as pytest's capture, are left alone).
_handler: logging.Handler | None = None


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


def add_trace_context(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add ``trace_id`` (32 hex digits) and ``span_id`` (16) of the current span, if any.

    The current span is the one of the calling task or thread (contextvars), so a library's
    line written inside an RPC's span gets that span's ids as well as ours do. A span with an
    invalid context (tracing off, no span) adds nothing.
    """
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


class _LevelledLoggerFactory(structlog.stdlib.LoggerFactory):
    """stdlib loggers for structlog, each at the gateway's level.

    The root logger holds the libraries at ``warning`` or above; a structlog logger's own
    stdlib logger gets the configured level, so our ``info`` lines pass (structlog's
    filtering wrapper has already dropped what is below the level).
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def __call__(self, *args: Any) -> logging.Logger:
        logger = super().__call__(*args)
        logger.setLevel(self.level)
        _structlog_loggers.add(logger.name)
        return logger


def _static_fields(fields: dict[str, Any]) -> Any:
    """A processor adding ``fields`` to every line (a line's own value for a key wins)."""

    def add(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        return event_dict

    return add


def configure_logging(
    level: str = "info", fmt: str = "auto", fields: dict[str, Any] | None = None
) -> None:
    """Route every logger of the process through structlog to stderr (call it again to change).

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``: our loggers' level; the
            libraries' is this or ``warning``, whichever is higher.
        fmt: ``json``, ``console`` or ``auto`` (console when stderr is a TTY).
        fields: added to every line of the process, e.g. ``{"worker": 1}`` in a worker of
            ``serve --workers N`` (gateway/supervisor.py).
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    # Run for every line, ours (before wrap_for_formatter) and the libraries' (foreign_pre_chain).
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
    ]
    if fields:
        shared.append(_static_fields(dict(fields)))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_LevelledLoggerFactory(numeric),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            # Last before rendering: masks the exception text and library messages too.
            _redact_processor,
            renderer,
        ],
    )
    global _handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    _handler = handler
    root.setLevel(max(numeric, logging.WARNING))
    for name in _structlog_loggers:
        logging.getLogger(name).setLevel(numeric)
    # Python warnings (DeprecationWarning...) as lines of the same stream, not bare stderr text.
    logging.captureWarnings(True)
