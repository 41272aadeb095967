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

from ._live_server import STALL_S, LiveServer, update, wait_until  # noqa: E402
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


def test_shutdown_finishes_committed_items_and_drops_the_one_in_progress():
    """One session's item is committed (its completed event comes before the final event), another's is still
    spoken (its stream is cancelled: the worker stops at once, with no stream left, instead of waiting for it)."""
    from ._clips import SR, pcm16, speech
    from ._live_server import append, chunks

    server = LiveServer(ServerConfig(batch_size=2, shutdown_timeout_s=STALL_S))
    audio = pcm16(speech()[:2 * SR])

    async def session(committed: bool):
        ws = await websockets.connect(server.ws + "?intent=transcription", open_timeout=STALL_S)
        assert json.loads(await asyncio.wait_for(ws.recv(), STALL_S))["type"] == "session.created"
        await ws.send(update(rate=16000, vad=False))
        for piece in chunks(audio):
            await ws.send(append(piece))
        await ws.send('{"type": "input_audio_buffer.commit"}' if committed else update(rate=16000, vad=False))
        answers = ["session.updated", "input_audio_buffer.committed" if committed else "session.updated"]
        while answers:  # the answers to the update and the commit (or the second update), in order
            event = json.loads(await asyncio.wait_for(ws.recv(), STALL_S))
            if not event["type"].startswith("conversation.item"):  # a delta may come at any time
                assert event["type"] == answers.pop(0), event
        return ws

    async def run():
        done, open_ = await session(True), await session(False)
        await asyncio.to_thread(wait_until, lambda: len(server.worker.streams) == 2)
        stopping = asyncio.ensure_future(asyncio.to_thread(server.stop))
        kinds = []
        while True:
            event = validated_event(json.loads(await asyncio.wait_for(done.recv(), STALL_S)))
            kinds.append(event.type)
            if event.type == "error":
                break
        assert kinds[-2:] == ["conversation.item.input_audio_transcription.completed", "error"]
        final = validated_event(json.loads(await asyncio.wait_for(open_.recv(), STALL_S)))
        assert (final.type, final.error.code) == ("error", "server_shutting_down")
        await asyncio.wait_for(stopping, STALL_S)

    asyncio.run(run())
    assert server.worker.streams == {} and not server.worker.alive
