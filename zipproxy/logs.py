"""Log lines: JSON (one object per line) for machines, or text for humans.

Only what the code passes in ``extra`` is printed; request lines carry method, path (UIDs are
fine), status, bytes, duration and outcome, never headers, query strings, credentials or
patient data.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Final

FIELDS: Final = ("request_id", "method", "path", "status", "outcome", "bytes", "duration_ms",
                 "error", "instances")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        return json.dumps(entry, ensure_ascii=True)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{n}={getattr(record, n)}" for n in FIELDS
                         if getattr(record, n, None) is not None)
        base = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        return f"{base} {extra}".rstrip()


def setup_logging(fmt: str = "json", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would print query strings (QIDO filters can hold patient data).
    logging.getLogger("aiohttp.access").disabled = True
    # pydicom logs odd values (unknown character sets, VR mismatches) that the proxy handles;
    # they are noise per instance, and their text may quote header values (patient data).
    logging.getLogger("pydicom").setLevel(logging.ERROR)
