"""Logging to stderr in `console` or `json` format; no timestamps under journald, which adds its own."""

from __future__ import annotations

import json
import logging
import os
import sys

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


class JsonFormatter(logging.Formatter):
    def __init__(self, with_time: bool):
        super().__init__()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        out = {"level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if self.with_time:
            out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), **out}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def under_journald() -> bool:
    # systemd sets JOURNAL_STREAM to the device:inode of stderr when it is the journal.
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def setup(level: str = "info", fmt: str = "console") -> None:
    with_time = not under_journald()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(with_time))
    else:
        prefix = "%(asctime)s " if with_time else ""
        handler.setFormatter(logging.Formatter(prefix + "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        # Filters stay with the new handler: a reload sets logging up again, and the secret
        # redaction that `run` installs (commands/run.py) must survive it.
        for f in h.filters:
            handler.addFilter(f)
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    # urllib3 logs every retry and connection at debug; its story is told by the uploader.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))
