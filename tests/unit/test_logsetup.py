"""Logging set up again (a SIGHUP reload does) keeps the filters `run` installed: the secret
redaction must not end at the first reload."""

from __future__ import annotations

import logging

from belabox_metrics.platform import logsetup


def test_setup_again_keeps_the_handlers_filters(capsys):
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        logsetup.setup("info", "console")

        class Hide(logging.Filter):
            def filter(self, record):
                record.msg = str(record.msg).replace("s3cret", "<redacted>")
                return True

        for h in root.handlers:
            h.addFilter(Hide())
        logsetup.setup("debug", "console")  # what a reload does
        logging.getLogger("t").info("token s3cret")
        err = capsys.readouterr().err
        assert "<redacted>" in err and "s3cret" not in err
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
