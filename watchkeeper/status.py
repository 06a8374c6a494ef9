"""`GET /healthz` and `GET /metrics` for a process that does not serve the ingest API.

A detector shard or an alerting replica (`serve --role detector`) has nothing to ingest but
still needs a health check for its orchestrator and metrics for Prometheus; `--port` gives it
this small app (the ingest API serves the same two routes itself).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from watchkeeper.collectors.ingest import health_response
from watchkeeper.health import Health
from watchkeeper.tsdb import Store

__all__ = ["create_status_app"]


def create_status_app(store: Store, health: Health, registry: CollectorRegistry) -> FastAPI:
    app = FastAPI(title="watchkeeper status", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return await health_response(store, health)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
