"""Structured JSON logging (structlog), one line per event, for every library too.

``configure_logging`` is called once per process. Context bound with
``structlog.contextvars`` (``job_id``, ``correlation_id``) appears on every line
logged while a message is handled, including lines from aio-pika and SQLAlchemy.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route structlog and stdlib logging through one JSON renderer on stderr."""
    structlog.configure(
        # filter_by_level first: a line below the logger's level (FastStream's
        # per-message "Received"/"Processed", debug lines) costs one level check instead
        # of the whole chain (context merge, timestamp) before stdlib drops it.
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            _add_service(service),
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Structured tracebacks without each frame's locals: those are large and can
            # hold secrets (SQL parameters, keys).
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # FastStream gives its logger a coloured text handler of its own and stops
    # propagation; route it through the JSON handler like everything else.
    framework = logging.getLogger("faststream")
    framework.handlers.clear()
    framework.propagate = True
    # Per-request access lines and per-message "Received/Processed" lines drown the
    # useful ones; they come back with ANIME_LOG_LEVEL=DEBUG.
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for noisy in ("aiohttp.access", "aiormq", "aio_pika", "faststream"):
        logging.getLogger(noisy).setLevel(quiet)


def _add_service(service: str) -> Any:
    def processor(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
