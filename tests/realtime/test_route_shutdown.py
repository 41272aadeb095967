"""Server shutdown with realtime sessions open: each gets a final ``error`` event (``server_shutting_down``) and
a close (1001, going away) before uvicorn closes its sockets; a new session is refused meanwhile."""
from __future__ import annotations

import asyncio
import json

from _requires import require

for _module in ("fastapi", "uvicorn", "websockets", "openai", "httpx"):
    require(_module)

import websockets  # noqa: E402

from whisper_model.server.config import ServerConfig  # noqa: E402

from ._live_server import STALL_S, LiveServer, update  # noqa: E402
from ._openai import validated_event  # noqa: E402


def test_shutdown_sends_every_session_a_final_event_and_a_close():
    server = LiveServer(ServerConfig(batch_size=2))

    async def run():
        sockets = [await websockets.connect(server.ws + "?intent=transcription", open_timeout=STALL_S)
                   for _ in range(3)]
        for ws in sockets:
            assert json.loads(await asyncio.wait_for(ws.recv(), STALL_S))["type"] == "session.created"
        await sockets[0].send(update(vad=False))
        assert json.loads(await asyncio.wait_for(sockets[0].recv(), STALL_S))["type"] == "session.updated"
        stopping = asyncio.ensure_future(asyncio.to_thread(server.stop))
        for ws in sockets:
            final = validated_event(json.loads(await asyncio.wait_for(ws.recv(), STALL_S)))
            assert (final.type, final.error.type, final.error.code) == ("error", "server_error",
                                                                         "server_shutting_down")
            await asyncio.wait_for(ws.wait_closed(), STALL_S)
            assert ws.close_code == 1001
        await asyncio.wait_for(stopping, STALL_S)

    asyncio.run(run())
    assert server.app.state.realtime.connections == set()
