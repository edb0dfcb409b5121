"""structlog set-up: one JSON (or console) line per event, rendered with orjson."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiohttp import http_exceptions

from hookgate.config import LogConfig

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(config: LogConfig) -> None:
    """Route structlog, and the standard library's loggers, to stdout in one format."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if config.format == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json_text)
        factory: Callable[..., Any] = structlog.BytesLoggerFactory(sys.stdout.buffer)
        processors: list[structlog.types.Processor] = [
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        factory = structlog.PrintLoggerFactory(sys.stdout)
        processors = [*shared, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[config.level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    _configure_stdlib(shared, renderer)


def _configure_stdlib(
    shared: list[structlog.types.Processor], renderer: structlog.types.Processor
) -> None:
    """aiohttp and asyncio log through the standard library: same lines, warnings and up."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.addFilter(_not_a_client_protocol_error)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)


def _json_text(value: Any, **options: Any) -> str:
    return orjson.dumps(value, **options).decode()


def _not_a_client_protocol_error(record: logging.LogRecord) -> bool:
    """Drop aiohttp's tracebacks for malformed requests: the client got its 400 already."""
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, http_exceptions.HttpProcessingError)
