"""Logging set-up: human lines by default, one JSON object per line with --log-json. Both carry
the record's time in ISO 8601 with its zone (UTC: ``2026-12-01T17:20:05.123+00:00``), the text line
first, the JSON object as ``ts``. Records carry ``url``, ``board_id``, ``model_id`` (the names of the
HTTP API and the metrics) and ``request`` fields where they concern one.

``Summary`` sums up a frequent event (a member computed by the engine) in one line at most every
so often, while each event is logged at debug.

``request`` comes by itself: the HTTP layer (api/requestlog.py) puts each request's id in
``REQUEST_ID`` while it is served, and the handler's filter copies it onto every record logged
in that context (asyncio tasks started by the request inherit it).
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections import Counter
from datetime import datetime, timezone

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("fleetvote_request_id", default=None)

# uvicorn adds color_message (its message with ANSI colours) to its records: noise in a log line
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime", "color_message"}


def timestamp(record: logging.LogRecord) -> str:
    """The record's creation time, ISO 8601 in UTC with milliseconds and the zone."""
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": timestamp(record), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _text_value(v: object) -> str:
    """A field's value on a text line: as is, unless it holds a control character (a request's
    path can: %0A decodes to a newline), then JSON-quoted, so that no client can forge a line."""
    s = str(v)
    return json.dumps(s) if any(ord(c) < 32 or ord(c) == 127 for c in s) else s


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={_text_value(v)}" for k, v in vars(record).items() if k not in _STD)
        base = f"{timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        return f"{base} {extra}".rstrip() + (("\n" + self.formatException(record.exc_info)) if record.exc_info else "")


class RequestContext(logging.Filter):
    """Adds ``request`` (the id of the request being served) to records that have none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request", None) is None:
            rid = REQUEST_ID.get()
            if rid is not None:
                record.request = rid
        return True


class Summary:
    """Counts of an event by key, logged at info as one line (``msg``, ``counts``, ``seconds``) at
    most every ``interval_s``: on the first event after a quiet spell at once, then with the
    events of the interval when the next one comes or when ``flush`` is called after it (the
    fleet calls it from its discovery loop, so that a burst's count is not held back)."""

    def __init__(self, logger: logging.Logger, msg: str, interval_s: float, clock=time.monotonic) -> None:
        self.logger, self.msg, self.interval_s, self.clock = logger, msg, interval_s, clock
        self.counts: Counter[str] = Counter()
        self._since: float | None = None  # start of the interval being counted
        self._last: float | None = None  # when the last line was written

    def add(self, key: str) -> None:
        now = self.clock()
        if self._since is None:
            self._since = now
        self.counts[key] += 1
        self.flush()

    def flush(self, force: bool = False) -> None:
        now = self.clock()
        if not self.counts or not force and self._last is not None and now - self._last < self.interval_s:
            return
        self.logger.info(self.msg, extra={"counts": dict(sorted(self.counts.items())),
                                          "seconds": round(now - (self._since or now), 3)})
        self.counts.clear()
        self._since, self._last = None, now


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
