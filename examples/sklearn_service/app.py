"""A real model service: a scikit-learn classifier behind FastAPI, reporting to watchkeeper.

The model is trained at start-up on the breast-cancer data set that ships with scikit-learn
(569 tumours, 30 numeric measurements each), so the example needs no download. Every answer is
reported through `watchkeeper.Monitor`:

- `POST /predict` times the model call with `monitor.track()` and logs the features and the
  predicted probability with `monitor.log_prediction` (an exception would count as an error);
- a request missing measurements is answered from the base rate instead, and counted with
  `monitor.log_fallback("missing_features")`;
- `POST /labels` reports the diagnosis once it is known, with `monitor.log_label`;
- `GET /metrics` exposes the Monitor's Prometheus metrics.

Run it (settings come from the environment when the app is created):

    cd examples/sklearn_service
    WATCHKEEPER_ENDPOINT=http://127.0.0.1:8765 uvicorn app:create_app --factory --port 8000

`WATCHKEEPER_ENDPOINT` unset: metrics only, nothing is sent. `WATCHKEEPER_TOKEN`: the
service's ingest token, if the ingest API requires one. `MODEL_VERSION`: reported with every
prediction (default `1`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, HTTPException
from prometheus_client import CollectorRegistry, make_asgi_app
from pydantic import BaseModel
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from watchkeeper import Monitor

MODEL_NAME = "breast-cancer"


@dataclass(frozen=True)
class Trained:
    """The fitted pipeline, its feature names, the base rate and a held-out set to query."""

    pipeline: Pipeline
    features: list[str]
    base_rate: float
    holdout: np.ndarray
    holdout_malignant: np.ndarray


def train(seed: int = 0) -> Trained:
    """Fit a scaled logistic regression on 75 % of the data; keep 25 % to send as traffic."""
    data = load_breast_cancer()
    features = [str(name).replace(" ", "_") for name in data.feature_names]
    malignant = data.target == 0  # scikit-learn codes malignant as 0
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, malignant, test_size=0.25, random_state=seed, stratify=malignant
    )
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(x_train, y_train)
    return Trained(pipeline, features, float(y_train.mean()), x_test, y_test)


class PredictRequest(BaseModel):
    features: dict[str, float]
    prediction_id: str | None = None


class PredictResponse(BaseModel):
    prediction_id: str | None
    malignant_probability: float
    fallback: bool


class LabelRequest(BaseModel):
    prediction_id: str
    malignant: bool


def create_app(
    endpoint: str | None = None,
    token: str | None = None,
    version: str | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The service; arguments left out are read from the environment (see the module doc)."""
    endpoint = endpoint or os.environ.get("WATCHKEEPER_ENDPOINT") or None
    token = token or os.environ.get("WATCHKEEPER_TOKEN") or None
    version = version or os.environ.get("MODEL_VERSION", "1")
    registry = registry if registry is not None else CollectorRegistry()
    trained = train()
    monitor = Monitor(
        MODEL_NAME, version=version, endpoint=endpoint, token=token, registry=registry
    )
    malignant_column = list(trained.pipeline.classes_).index(True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        monitor.close(timeout=5.0)  # deliver what is still queued before the process exits

    app = FastAPI(title="breast-cancer classifier (watchkeeper example)", lifespan=lifespan)
    app.mount("/metrics", make_asgi_app(registry))

    @app.post("/predict")
    def predict(request: PredictRequest) -> PredictResponse:
        missing = [name for name in trained.features if name not in request.features]
        if missing:
            # Answer anyway, from the base rate, and say so: the fallback-rate check watches this.
            monitor.log_fallback("missing_features")
            return PredictResponse(
                prediction_id=None, malignant_probability=trained.base_rate, fallback=True
            )
        row = np.array([[request.features[name] for name in trained.features]])
        with monitor.track():  # times the model call; an exception counts as an error
            probability = float(trained.pipeline.predict_proba(row)[0, malignant_column])
            prediction_id = monitor.log_prediction(
                request.features, probability, prediction_id=request.prediction_id
            )
        return PredictResponse(
            prediction_id=prediction_id, malignant_probability=probability, fallback=False
        )

    @app.post("/labels", status_code=202)
    def label(request: LabelRequest) -> dict[str, str]:
        monitor.log_label(request.prediction_id, request.malignant)
        return {"status": "accepted"}

    @app.get("/samples/{index}")
    def sample(index: int) -> dict[str, object]:
        """A held-out tumour's measurements and diagnosis, to send as traffic."""
        if not 0 <= index < len(trained.holdout):
            raise HTTPException(404, f"index must be in [0, {len(trained.holdout)})")
        row = trained.holdout[index]
        return {
            "features": dict(zip(trained.features, (float(v) for v in row), strict=True)),
            "malignant": bool(trained.holdout_malignant[index]),
        }

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
