"""``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``: admit, read the form, decode the audio,
queue it as a stream of the one scheduler, answer (a rendered result, or server-sent events of segments).

A request is admitted first (503 when the queue is full), then its form is read (the upload's temporary file is
closed right after) and its audio decoded off the event loop (``uploads``: in decoding processes or on threads;
400 naming the problem). While it waits for its
stream, a client that disconnects or a request past ``request_timeout_s`` (504) drops its rows from the batch.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from ..results import StreamResult
from ..scheduler import Failed, Finished, Segments
from .config import ServedModel, ServerConfig
from .errors import ApiError, from_failure
from .forms import read_form
from .limits import Admission, Ticket
from .metrics import Metrics
from .responses import rendered, sse_delta, sse_done, sse_error
from .uploads import UploadDecoder
from .worker import BatchWorker, Job

CLIENT_GONE = 499  # nginx's status for a request whose client closed the connection (never sent)


@dataclass
class ServerState:
    served: ServedModel
    config: ServerConfig
    metrics: Metrics
    worker: BatchWorker
    admission: Admission
    uploads: UploadDecoder

    def answered(self, endpoint: str, status: int, since: float) -> None:
        self.metrics.requests.labels(endpoint, str(status)).inc()
        if status == 200:
            self.metrics.latency.labels(endpoint).observe(time.monotonic() - since)


async def transcriptions(request: Request) -> Response:
    return await audio(request, "transcribe", "transcriptions")


async def translations(request: Request) -> Response:
    return await audio(request, "translate", "translations")


async def audio(request: Request, task: str, endpoint: str) -> Response:
    state: ServerState = request.app.state.server
    since, ticket = time.monotonic(), None
    try:
        ticket = state.admission.enter()
        form = await read_form(request, task, state.served)
        samples = await state.uploads.decode(form.data, form.filename)
        job = state.worker.submit(samples, form.options, form.language, form.prompt, form.chunking, form.vad_filter)
        if form.stream:
            events = streamed(state, job, ticket, endpoint, since)
            ticket = None  # the stream releases it when it ends
            return EventSourceResponse(events, ping=15)
        segments, info = await finished(request, state, job, since)
        response = rendered(segments, info, form.response_format, form.granularities)
        state.answered(endpoint, 200, since)
        return response
    except ApiError as e:
        state.answered(endpoint, e.status, since)
        return e.response()
    finally:
        if ticket is not None:
            ticket.release()


async def finished(request: Request, state: ServerState, job: Job, since: float):
    """The job's (segments, info); its rows are dropped when the client disconnects (``ApiError`` 499, never
    sent) or the request times out (504)."""
    result = asyncio.ensure_future(job.result())
    gone = asyncio.ensure_future(disconnected(request))
    timeout = state.config.request_timeout_s - (time.monotonic() - since)
    try:
        done, _ = await asyncio.wait({result, gone}, timeout=max(timeout, 0.0),
                                     return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server is stopping this request
        result.cancel()
        state.worker.cancel(job.id)
        raise
    finally:
        gone.cancel()
    if result in done:
        try:
            return result.result()
        except Exception as e:  # the stream's Failed error
            raise from_failure(e) from None
    result.cancel()
    state.worker.cancel(job.id)
    if gone in done:
        raise ApiError(CLIENT_GONE, "the client closed the connection")
    state.metrics.rejected.labels("timeout").inc()
    raise ApiError(504, f"the request did not finish within {state.config.request_timeout_s:g} s; its decoding "
                   "was stopped", code="timeout")


async def disconnected(request: Request) -> None:
    """Returns when the client has gone (the body is read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def streamed(state: ServerState, job: Job, ticket: Ticket, endpoint: str, since: float):
    """The server-sent events of ``job`` (``responses``' docstring); a client that goes away (the response task
    is cancelled) or the timeout drop its rows."""
    result, status = StreamResult(job.id), None
    try:
        while True:
            left = state.config.request_timeout_s - (time.monotonic() - since)
            try:
                event = await asyncio.wait_for(job.queue.get(), timeout=max(left, 0.0))
            except asyncio.TimeoutError:
                state.metrics.rejected.labels("timeout").inc()
                error = ApiError(504, f"the request did not finish within {state.config.request_timeout_s:g} s",
                                 code="timeout")
                status = 504
                yield {"data": sse_error(error)}
                return
            result.add(event)
            if isinstance(event, Segments):
                for segment in event.segments:
                    yield {"data": sse_delta(segment)}
            elif isinstance(event, Finished):
                status = 200
                yield {"data": sse_done(result.segments, event.info)}
                yield {"data": "[DONE]"}
                return
            elif isinstance(event, Failed):
                error = from_failure(event.error)
                status = error.status
                yield {"data": sse_error(error)}
                return
    finally:
        if status is None or status == 504:  # the client went away, or the time is up: drop its rows
            state.worker.cancel(job.id)
        state.answered(endpoint, CLIENT_GONE if status is None else status, since)
        ticket.release()


__all__ = ["CLIENT_GONE", "ServerState", "transcriptions", "translations"]
