"""--log.format: logfmt (the default, as Prometheus logs) or json, one line per record."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from exporter.logformat import JsonFormatter, LogfmtFormatter


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("exporter.runtime", logging.WARNING, __file__, 1, msg, args, None)


def test_logfmt_quotes_what_needs_quoting() -> None:
    line = LogfmtFormatter().format(record('target=%s down: "%s"', "a/b", "no\nroute"))
    assert (
        line.split(" ", 1)[1]
        == 'level=warning logger=exporter.runtime msg="target=a/b down: \\"no\\nroute\\""'
    )
    assert line.startswith("ts=20") and line.split(" ", 1)[0].endswith("Z")


def test_json_is_one_object_per_line() -> None:
    doc = json.loads(JsonFormatter().format(record("price=%s", 4.5)))
    assert (doc["level"], doc["logger"], doc["msg"]) == ("warning", "exporter.runtime", "price=4.5")


def test_the_cli_takes_the_flag() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--log.format",
            "json",
            "--log-level",
            "debug",
            "check-config",
            "/nonexistent",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "cannot read" in done.stdout + done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "exporter", "--log.format", "xml", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "logfmt" in bad.stderr
