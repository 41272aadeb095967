"""``/v1/realtime?intent=transcription``: OpenAI's Realtime transcription protocol over a WebSocket (issue 27).

    client = AsyncOpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY)
    async with client.realtime.connect(model="tiny.en", extra_query={"intent": "transcription"}) as connection:
        ...                                         # session.created first; then session.update, appends, commits

Each connection is one ``realtime.RealtimeSession``: ``session.created`` is sent at once; each client message goes
through ``session.handle`` (its events are sent back: ``session.updated``, ``speech_started`` / ``_stopped``,
``committed``, ``cleared``, or an ``error`` in OpenAI's shape, and the session goes on), and its items are
transcribed as live streams of the server's worker (``realtime_items.LiveItems``: deltas and completed events
as the worker gives them). The API key is checked on the handshake (``limits.ApiKeyCheck``: 401). A session beyond
``max_realtime_sessions``, another intent or an unknown model get an ``error`` event, then a close. A client that
goes away has its streams dropped at once; on shutdown (``RealtimeHub.close_all``, called by ``serving.Server``
before uvicorn closes the sockets) each session stops reading, its committed items finish (up to the shutdown
timeout), then it gets a final ``error`` event (``server_shutting_down``) and a close (1001, going away). A client
that leaves more than ``MAX_OUTBOX`` server events unread is closed at once (1008, its streams dropped): the
server's memory does not grow with a client that stopped reading.
"""
from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from starlette.websockets import WebSocket

from ..realtime import server_events as out
from ..realtime.config import SessionConfig
from ..realtime.events import ERROR_TYPE
from ..realtime.session import RealtimeSession
from .metrics import Metrics
from .realtime_items import LiveItems

log = logging.getLogger("whisper_model.server")
CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_SERVER_ERROR, CLOSE_TRY_LATER = 1001, 1008, 1011, 1013
INTENT = "transcription"
MAX_OUTBOX = 4096  # server events waiting for a client that reads slower than they come; past it the session closes


def refused(message: str, code: str, param: Optional[str] = None) -> dict:
    """An ``error`` event of a connection that is refused (``invalid_request_error``)."""
    return {"type": "error", "event_id": out.new_id("event"),
            "error": {"type": ERROR_TYPE, "code": code, "message": message, "param": param, "event_id": None}}


class RealtimeHub:
    """The server's realtime sessions: at most ``limit`` open; ``close_all`` ends them (on the event loop)."""

    def __init__(self, limit: int, metrics: Metrics):
        self.limit, self.metrics = limit, metrics
        self.connections: set[Connection] = set()
        self.closing = False
        # client events are handled here, off the event loop (an append runs the VAD's frames), one at a time: the
        # VAD sets torch's thread count around its frames, which two threads at once would leave wrong
        self.handler = ThreadPoolExecutor(1, thread_name_prefix="realtime-events")

    def refusal(self, query, served) -> Optional[tuple[dict, int]]:
        """(the error event, the close code) of a connection that may not open, or None."""
        if self.closing:
            return out.server_error("the server is shutting down", "server_shutting_down"), CLOSE_GOING_AWAY
        if query.get("intent") != INTENT:
            return refused(f"this server has transcription sessions only: connect with ?intent={INTENT} (got "
                           f"intent={query.get('intent')!r})", "invalid_intent", "intent"), CLOSE_POLICY
        model = query.get("model")
        if model is not None and model not in served.ids:
            return refused(f"the model {model!r} does not exist: this server serves {', '.join(served.ids)}",
                           "model_not_found", "model"), CLOSE_POLICY
        if len(self.connections) >= self.limit:
            self.metrics.rejected.labels("too_many_sessions").inc()
            return out.server_error(f"the server has {len(self.connections)} realtime sessions open, its limit: "
                                    "try again later", "too_many_sessions"), CLOSE_TRY_LATER
        return None

    def opened(self, connection: "Connection") -> None:
        self.connections.add(connection)
        self.metrics.realtime_sessions.set(len(self.connections))

    def closed(self, connection: "Connection") -> None:
        self.connections.discard(connection)
        self.metrics.realtime_sessions.set(len(self.connections))

    async def close_all(self, timeout: float) -> None:
        """Refuse new sessions; end every open one (see the module) and wait for them, up to ``timeout`` s for
        their committed items and a few more for the goodbyes."""
        self.closing = True
        connections = list(self.connections)
        for connection in connections:
            connection.stop(timeout)
        if connections:
            await asyncio.wait([asyncio.ensure_future(c.ended.wait()) for c in connections], timeout=timeout + 5)


class Connection:
    """One session on one WebSocket: a reader of client events, a writer of server events (one queue, so
    events leave in the order they were made), and the session's live items."""

    def __init__(self, websocket: WebSocket, session: RealtimeSession, state, handler: ThreadPoolExecutor):
        self.websocket, self.session, self.handler = websocket, session, handler
        self.metrics = state.metrics
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.items = LiveItems(state.worker, self.send, state.served.base_options, state.metrics)
        self.ended = asyncio.Event()
        self._stop: Optional[float] = None  # the shutdown's timeout, once stop() was called
        self._stopping = asyncio.Event()
        self._overflow = asyncio.Event()  # the client left MAX_OUTBOX events unread

    def send(self, events: list) -> None:
        for event in events:
            if self.outbox.qsize() >= MAX_OUTBOX:
                self._overflow.set()
                return
            self.outbox.put_nowait(event)

    def stop(self, timeout: float) -> None:
        """The server is shutting down: finish as the module says."""
        self._stop = timeout
        self._stopping.set()

    async def run(self) -> None:
        self.send(self.session.start())
        tasks = [asyncio.ensure_future(c) for c in (self._read(), self._write(), self._stopping.wait(),
                                                    self._overflow.wait())]
        reader, writer, stopping, overflow = tasks
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if overflow.done():
                await self._drop_slow_client(reader, writer)
            elif stopping.done() and not writer.done():
                reader.cancel()
                await self._goodbye(writer)
            elif reader.done() and reader.exception() is not None and not writer.done():
                log.error("a realtime session failed", exc_info=reader.exception())
                self.send([out.server_error(f"internal error: {reader.exception()}"), CLOSE_SERVER_ERROR])
                await asyncio.wait([writer], timeout=5)
        finally:
            self.items.cancel_all()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.ended.set()

    async def _read(self) -> None:
        """Client events until the client goes away."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text") if message.get("text") is not None else message.get("bytes")
            result = await asyncio.get_running_loop().run_in_executor(self.handler, self.session.handle, data)
            self.send(result.events)
            self.items.sync(self.session, result.utterances)

    async def _write(self) -> None:
        """Server events in order; an int in the queue is a close code: the last thing sent."""
        while True:
            event = await self.outbox.get()
            if isinstance(event, int):
                await self.websocket.close(event)
                return
            await self.websocket.send_text(json.dumps(event))

    async def _drop_slow_client(self, reader: asyncio.Task, writer: asyncio.Task) -> None:
        log.warning("realtime session %s: the client left %d events unread; closing it", self.session.id, MAX_OUTBOX)
        self.metrics.rejected.labels("slow_client").inc()
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
        try:
            await asyncio.wait_for(self.websocket.close(CLOSE_POLICY, "the client reads the server's events too "
                                                        "slowly"), 5)
        except Exception:  # noqa: BLE001 - the socket may be gone already; the session ends either way
            pass

    async def _goodbye(self, writer: asyncio.Task) -> None:
        self.items.cancel_open()
        try:
            await asyncio.wait_for(self.items.drained(), self._stop)
        except asyncio.TimeoutError:
            log.warning("realtime session %s: its items did not finish within %g s", self.session.id, self._stop)
        self.send([out.server_error("the server is shutting down: this session ends", "server_shutting_down"),
                   CLOSE_GOING_AWAY])
        await asyncio.wait([writer], timeout=5)


async def realtime(websocket: WebSocket) -> None:
    """The WebSocket route (see the module)."""
    state, hub = websocket.app.state.server, websocket.app.state.realtime
    await websocket.accept()
    refusal = hub.refusal(websocket.query_params, state.served)
    if refusal is not None:
        event, code = refusal
        await websocket.send_text(json.dumps(event))
        await websocket.close(code)
        return
    model = websocket.query_params.get("model") or state.served.name
    session = RealtimeSession(SessionConfig(model=model), max_append_chars=state.config.max_append_chars,
                              models=state.served.ids)
    connection = Connection(websocket, session, state, hub.handler)
    hub.opened(connection)
    try:
        await connection.run()
    finally:
        hub.closed(connection)


__all__ = ["Connection", "RealtimeHub", "realtime"]
