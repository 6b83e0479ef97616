"""Logging of the `aaex` application: text or JSON lines, and the demo's log file.

Only the CLI configures logging; the library modules only log.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

_RECORD_FIELDS = {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, for log collectors.

    It carries time, level, logger, message, the exception, and every field passed with
    ``extra=`` (e.g. ``{"event": "task_started"}``), so events can be matched without
    parsing the message text.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        document: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname,
                                    "logger": record.name, "message": record.getMessage()}
        document.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def log_to_file(path: Path, verbose: bool) -> None:
    """Send the in-process node's logs to a file: the terminal shows progress and results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    if not verbose:  # -v keeps the terminal's handler as well
        for old in root.handlers[:]:
            root.removeHandler(old)
    root.addHandler(handler)


def configure(*, verbose: bool, log_format: str) -> None:
    """Log to stderr at INFO (DEBUG with `verbose`), as text or one JSON object per line."""
    level = logging.DEBUG if verbose else logging.INFO
    if log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLogFormatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
