"""The FastAPI application: OpenAI's audio API over one continuously batched scheduler.

    app = create_app(ServedModel(model, tokenizer, "base"), ServerConfig(batch_size=16))
    uvicorn.run(app, host="127.0.0.1", port=8000)      # what ``python -m whisper_model.serve`` does

Routes: ``POST /v1/audio/transcriptions``, ``POST /v1/audio/translations`` (``routes``), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /health``, ``GET /metrics`` (Prometheus), and the WebSocket
``/v1/realtime?intent=transcription`` (``realtime_route``: OpenAI's Realtime transcription sessions, their items
live streams of the same worker; ``app.state.realtime`` holds them). Errors are OpenAI's JSON
(``{"error": {"message", "type", "param", "code"}}``). The worker thread (``worker.BatchWorker``) starts with
the app and stops after it: on shutdown uvicorn first lets the requests in flight finish
(``timeout_graceful_shutdown``), then the worker ends. Uploads are decoded in ``config.decode_processes``
processes (``uploads``) that start and stop with the app.
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .config import ServedModel, ServerConfig
from .errors import ApiError
from .limits import Admission, ApiKeyCheck, BodyLimit
from .metrics import Metrics
from .realtime_route import RealtimeHub, realtime
from .routes import ServerState, transcriptions, translations
from .uploads import UploadDecoder
from .worker import BatchWorker

log = logging.getLogger("whisper_model.server")
CREATED = int(time.time())


def create_app(served: ServedModel, config: ServerConfig = ServerConfig()) -> FastAPI:
    metrics = Metrics(config.batch_size)
    state = ServerState(served, config, metrics, BatchWorker(served, config, metrics),
                        Admission(config.capacity, config.retry_after_s, metrics),
                        UploadDecoder(config.decode_processes))
    hub = RealtimeHub(config.max_realtime_sessions, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.uploads.start()
        state.worker.start()
        log.info("serving %s: batch of %d rows, %d more requests may wait", served.name, config.batch_size,
                 config.max_queue)
        yield
        state.admission.closing = hub.closing = True
        hub.handler.shutdown(wait=False)
        if not state.worker.stop(config.shutdown_timeout_s):
            log.warning("the batch worker did not stop within %g s", config.shutdown_timeout_s)
        state.uploads.close()

    app = FastAPI(title="trtllm-whisper", summary="OpenAI-compatible speech to text", lifespan=lifespan)
    app.state.server, app.state.realtime = state, hub
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes, metrics=metrics)
    if config.api_key is not None:
        app.add_middleware(ApiKeyCheck, key=config.api_key, metrics=metrics)  # outermost: before the body
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, server_error)
    app.add_api_route("/v1/audio/transcriptions", transcriptions, methods=["POST"])
    app.add_api_route("/v1/audio/translations", translations, methods=["POST"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    app.add_api_route("/v1/models/{model_id}", model, methods=["GET"])
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_websocket_route("/v1/realtime", realtime)
    app.add_api_route("/metrics", prometheus, methods=["GET"])
    return app


def _card(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "trtllm-whisper"}


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [_card(i) for i in request.app.state.server.served.ids]})


async def model(request: Request) -> JSONResponse:
    model_id = request.path_params["model_id"]
    if model_id not in request.app.state.server.served.ids:
        return ApiError(404, f"the model {model_id!r} does not exist", param="model",
                        code="model_not_found").response()
    return JSONResponse(_card(model_id))


async def health(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    alive = state.worker.alive and not state.admission.closing
    body = {"status": "ok" if alive else "unavailable", "model": state.served.name,
            "batch_size": state.config.batch_size, "in_flight": state.admission.admitted,
            "capacity": state.config.capacity}
    return JSONResponse(body, status_code=200 if alive else 503)


async def prometheus(request: Request) -> Response:
    return Response(request.app.state.server.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    return ApiError(exc.status_code, message.get(exc.status_code, str(exc.detail))).response()


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}").response()


__all__ = ["create_app"]
