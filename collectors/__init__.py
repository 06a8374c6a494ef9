"""Collectors: how data gets in. The client library (`Monitor`) and the ingest HTTP API.

Only the client is exported here, so a model service importing `watchkeeper` never imports
FastAPI or pydantic; the server side lives in `watchkeeper.collectors.ingest` (`create_app`,
`IngestServer`) and `watchkeeper.collectors.wire` (the validated wire format).
"""

from .client import ClientStats, Monitor

__all__ = ["ClientStats", "Monitor"]
