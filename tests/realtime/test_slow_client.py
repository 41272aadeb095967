"""A realtime client that stops reading is closed once ``MAX_OUTBOX`` server events wait for it (the server's memory
does not grow with it); its streams are dropped, and the rejection is counted."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from _requires import require

for _module in ("fastapi", "prometheus_client"):
    require(_module)

from whisper_model.realtime.config import SessionConfig  # noqa: E402
from whisper_model.realtime.session import RealtimeSession  # noqa: E402
from whisper_model.server import realtime_route  # noqa: E402
from whisper_model.server.metrics import Metrics  # noqa: E402


class StuckSocket:
    """A WebSocket whose client sends nothing and reads nothing: every send waits for ever."""

    def __init__(self):
        self.sent, self.closed = 0, None

    async def receive(self):
        await asyncio.Event().wait()

    async def send_text(self, text):
        self.sent += 1
        await asyncio.Event().wait()

    async def close(self, code=1000, reason=None):
        self.closed = (code, reason)


def test_a_client_that_stops_reading_is_closed_past_the_outbox_limit(monkeypatch):
    monkeypatch.setattr(realtime_route, "MAX_OUTBOX", 8)
    metrics = Metrics(batch_size=1)
    state = SimpleNamespace(worker=None, served=SimpleNamespace(base_options=None), metrics=metrics)

    async def run():
        socket = StuckSocket()
        connection = realtime_route.Connection(socket, RealtimeSession(SessionConfig()), state,
                                               ThreadPoolExecutor(1))
        task = asyncio.ensure_future(connection.run())
        await asyncio.sleep(0.05)
        assert not task.done() and socket.sent == 1  # session.created is stuck in the send
        connection.send([{"type": "x"}] * 7)  # 7 waiting: under the limit
        await asyncio.sleep(0.05)
        assert not task.done() and connection.outbox.qsize() == 7
        connection.send([{"type": "x"}] * 2)  # the 9th waiting event passes the limit
        await asyncio.wait_for(task, 5)
        return socket, connection

    socket, connection = asyncio.run(run())
    assert socket.closed[0] == realtime_route.CLOSE_POLICY and "too slowly" in socket.closed[1]
    assert connection.ended.is_set() and connection.outbox.qsize() == 8
    assert metrics.rejected.labels("slow_client")._value.get() == 1
