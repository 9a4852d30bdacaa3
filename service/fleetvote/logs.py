"""Logging set-up: human lines by default, one JSON object per line with --log-json. Records
carry ``board`` and ``request`` fields where they concern one.

``request`` comes by itself: the HTTP layer (api/requestlog.py) puts each request's id in
``REQUEST_ID`` while it is served, and the handler's filter copies it onto every record logged
in that context (asyncio tasks started by the request inherit it).
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("fleetvote_request_id", default=None)

# uvicorn adds color_message (its message with ANSI colours) to its records: noise in a log line
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(time.time(), 3), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STD)
        base = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: {record.getMessage()}"
        return f"{base} {extra}".rstrip() + (("\n" + self.formatException(record.exc_info)) if record.exc_info else "")


class RequestContext(logging.Filter):
    """Adds ``request`` (the id of the request being served) to records that have none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request", None) is None:
            rid = REQUEST_ID.get()
            if rid is not None:
                record.request = rid
        return True


def setup(json_lines: bool = False, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(RequestContext())
    root = logging.getLogger("fleetvote")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def uvicorn_log_config(json_lines: bool = False) -> dict:
    """uvicorn's ``log_config``: its server messages ("Uvicorn running on ...", errors in the
    application) in our format, and no access log: api/requestlog.py writes one line per request,
    with its id. ``uvicorn.run(..., log_config=uvicorn_log_config(settings.log_json))``."""
    fmt = JsonFormatter if json_lines else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestContext}},
        "formatters": {"fleetvote": {"()": fmt}},
        "handlers": {"fleetvote": {"class": "logging.StreamHandler", "formatter": "fleetvote",
                                   "filters": ["request"], "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["fleetvote"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},  # propagates to "uvicorn"
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
