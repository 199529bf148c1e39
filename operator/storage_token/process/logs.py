"""Logging: plain or JSON lines, one format for kopf and our own loggers."""

from __future__ import annotations

import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str = "plain", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Request-level client logs could echo headers or bodies: keep them quiet at every level.
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes.client.rest"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kopf's per-object lines say "Handler succeeded" for every watch event of every object (our handlers
    # only feed queues): four lines per issuance in a burst. Its warnings and errors still show.
    debug = logging.getLevelName(root.level) == "DEBUG"
    logging.getLogger("kopf.objects").setLevel(logging.NOTSET if debug else logging.WARNING)
