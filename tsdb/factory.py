"""Build the store the configuration asks for, so callers never name a backend themselves.

>>> import tempfile
>>> from watchkeeper.config import StorageConfig
>>> store = open_store(StorageConfig(path=tempfile.mkdtemp()))
>>> type(store).__name__
'SQLiteStore'
>>> store.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from .sqlite import SQLiteStore
from .store import Store

if TYPE_CHECKING:  # tsdb must not import the wiring package at run time
    from watchkeeper.config import StorageConfig


def open_store(config: StorageConfig, *, registry: CollectorRegistry | None = None) -> Store:
    """The `Store` of `config.backend`; `registry` receives the InfluxDB write counters."""
    if config.backend == "influxdb":
        from .influx import InfluxStore  # only users of InfluxDB pay for its client's import

        influx = config.influxdb
        if influx is None:  # the config validator already refuses this
            raise ValueError("storage.influxdb: required when storage.backend is influxdb")
        return InfluxStore(
            url=influx.url,
            token=influx.token.get_secret_value(),
            org=influx.org,
            bucket=influx.bucket,
            timeout_s=influx.timeout,
            max_retries=influx.max_retries,
            max_retry_time_s=influx.max_retry_time,
            retry_interval_s=influx.retry_interval,
            gzip=influx.gzip,
            registry=registry,
        )
    return SQLiteStore(config.store_file, busy_timeout_s=config.busy_timeout)
