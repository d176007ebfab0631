"""Log lines as operators' tools read them: ``logfmt`` (Prometheus's and node_exporter's default) or
``json`` (one object per line, for Loki, Elasticsearch and friends). Messages keep their own
``key=value`` text; the formatter adds the time, level and logger, quoted where logfmt needs it."""

from __future__ import annotations

import json
import logging
import time

FORMATS = ("logfmt", "json")


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _logfmt_value(text: str) -> str:
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    return (
        '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
    )


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        fields = (("ts", _timestamp(record)), ("level", record.levelname.lower()), ("logger", record.name))
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in (*fields, ("msg", message)))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": _timestamp(record), "level": record.levelname.lower(), "logger": record.name}
        doc["msg"] = record.getMessage()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def formatter(name: str) -> logging.Formatter:
    return JsonFormatter() if name == "json" else LogfmtFormatter()
