"""Telling "the store is unusable" apart from a bug or bad data, for either backend.

The detector and alerting treat the two differently: a store outage is reported as its own
alert and judging pauses (judging windows the store could not fill would page on missing
data); any other error fails only the model it happened on.
"""

from __future__ import annotations

import sqlite3
import sys

__all__ = ["is_store_error"]


def is_store_error(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) means the store cannot be read or written now:
    SQLite locked, disk full or I/O errors, a corrupt file; InfluxDB unreachable, timing out
    or answering errors; any OS-level failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_outage(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, (sqlite3.OperationalError, OSError, TimeoutError)):
        return True
    if type(exc) is sqlite3.DatabaseError:  # "database disk image is malformed"
        return True
    if "urllib3" in sys.modules:
        import urllib3.exceptions

        if isinstance(exc, urllib3.exceptions.HTTPError):
            return True
    if "watchkeeper.tsdb.influx" in sys.modules:
        from .influx import InfluxWriteError

        if isinstance(exc, InfluxWriteError):
            return True
    if "influxdb_client" in sys.modules:
        from influxdb_client.rest import ApiException

        if isinstance(exc, ApiException):
            status = exc.status or 0
            return status == 0 or status >= 500 or status in (401, 403, 404, 429)
    return False
