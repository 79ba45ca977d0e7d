"""Delivery of progress records to the callback and the JSON-lines log."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

Callback = Callable[[dict[str, Any]], None]


def _json_safe(value: Any) -> Any:
    """Replace NaN and infinities (invalid in JSON) with None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


class RecordSink:
    """Sends each record to the callback and appends it as one line of JSON to the log.

    Every record gets ``event`` and ``time`` (Unix seconds). Each line is flushed as it is
    written, so a reader tailing the log gets progress at once. The log is truncated when a new
    run starts and appended to when a run resumes.

    The log is opened by the ``start`` record, so a run rejected during set-up (invalid data or
    config) leaves no log file. Records emitted before ``start`` go to the callback only.
    """

    def __init__(self, callback: Callback | None, log_path: str | os.PathLike | None, *, append: bool):
        self._callback = callback
        self._file = None
        self._path = Path(log_path) if log_path is not None else None
        self._append = append

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record = _json_safe({"event": event, "time": round(time.time(), 3), **fields})
        if self._file is None and self._path is not None and event == "start":
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._path, "a" if self._append else "w", encoding="utf-8")
        if self._file is not None:
            self._file.write(json.dumps(record, allow_nan=False) + "\n")
            self._file.flush()
        if self._callback is not None:
            self._callback(dict(record))
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read every record of a JSON-lines training log, skipping a partly written last line."""
    records = []
    with open(path, encoding="utf-8") as file:
        for line in file:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # Only the line being written while we read can be incomplete.
                break
    return records
