"""Collectors: how data gets in. The client library, the ingest HTTP API and the scraper.

Only the client is exported here, so a model service importing `watchkeeper` never imports
FastAPI, pydantic or the configuration. The client is split into modules of one job:
`client` (`Monitor`), `metrics` (its Prometheus metrics), `sanitize` (value checks), `encode`
(queued records to wire dicts), `sender` (the background batching sender), `transport` (HTTP),
`tracking` (`Monitor.track()`), `ratelog` (rate-limited logging). The server side lives in
`ingest` (`create_app`, `IngestServer`), `wire` (the validated wire format) and `auth` (tokens,
rate limits); `scraper` (`Scraper`) reads Prometheus endpoints into the store.
"""

from .client import ClientStats, Monitor

__all__ = ["ClientStats", "Monitor"]
