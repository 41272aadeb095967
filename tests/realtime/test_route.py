"""``/v1/realtime``: the WebSocket route's protocol, key, limits and metrics, through raw ``websockets`` and the
official ``openai`` client's realtime connection (tiny.en in this process; nothing here needs a transcript)."""
from __future__ import annotations

import asyncio
import json

import pytest

from _requires import require

for _module, _package in (("fastapi", None), ("uvicorn", None), ("websockets", None), ("openai", None),
                          ("prometheus_client", "prometheus-client"), ("httpx", None)):
    require(_module, _package)

import websockets  # noqa: E402

from whisper_model.server.config import ServerConfig  # noqa: E402

from ._live_server import KEY, STALL_S, LiveServer, append, update  # noqa: E402
from ._openai import validated_event  # noqa: E402

LIMIT_CHARS = 8000  # base64 characters an append may carry on this server (6000 bytes: 125 ms at 24 kHz)
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server():
    srv = LiveServer(ServerConfig(batch_size=2, api_key=KEY, max_realtime_sessions=2, max_append_chars=LIMIT_CHARS))
    yield srv
    srv.stop()


def connect(server, query: str = "?intent=transcription", headers=AUTH):
    return websockets.connect(server.ws + query, additional_headers=headers, open_timeout=STALL_S)


async def recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), STALL_S))


def test_a_session_starts_with_session_created(server):
    async def run():
        async with connect(server, "?intent=transcription&model=tiny.en") as ws:
            created = validated_event(await recv(ws))
            assert created.type == "session.created"
            session = created.session
            assert session.type == "transcription" and session.audio.input.format.rate == 24000
            assert session.audio.input.transcription.model == "tiny.en"
            assert session.audio.input.turn_detection.type == "server_vad"
            await ws.send(update(vad=False))
            updated = validated_event(await recv(ws))
            assert updated.type == "session.updated" and updated.session.audio.input.turn_detection is None

    asyncio.run(run())


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}], ids=["none", "wrong"])
def test_a_missing_or_wrong_api_key_is_refused_on_the_handshake(server, headers):
    async def run():
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(server, headers=headers):
                pass
        assert info.value.response.status_code == 401
        assert json.loads(info.value.response.body)["error"]["code"] == "invalid_api_key"

    asyncio.run(run())


BAD = [  # (client event, error code, param)
    ('{"type": "response.create"}', "invalid_value", "type"),
    ('{"type": "input_audio_buffer.append", "audio": "not base64!"}', "invalid_value", "audio"),
    (update(rate=8000), "unsupported_value", "session.audio.input.format.rate"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (LIMIT_CHARS + 4)}), "audio_too_large",
     "audio"),
    ("{not json", "invalid_json", None),
    (update(model="gpt-4o-transcribe"), "model_not_found", "session.audio.input.transcription.model"),
]


def test_bad_client_events_get_an_error_and_the_session_goes_on(server):
    async def run():
        async with connect(server) as ws:
            assert (await recv(ws))["type"] == "session.created"
            for message, code, param in BAD:
                await ws.send(message)
                event = validated_event(await recv(ws))
                assert (event.type, event.error.type, event.error.code, event.error.param) == \
                    ("error", "invalid_request_error", code, param), message[:60]
            await ws.send(append(bytes(4800)))  # 100 ms of silence, under the limit: taken without an answer
            await ws.send(update(rate=16000))  # this server's extension: OpenAI's types allow 24000 only
            assert (await recv(ws))["session"]["audio"]["input"]["format"]["rate"] == 16000
            assert server.worker.streams == {}  # silence opened no item

    asyncio.run(run())


def test_a_session_beyond_the_limit_is_refused_and_the_others_go_on(server):
    async def run():
        async with connect(server) as first, connect(server) as second:
            for ws in (first, second):
                assert (await recv(ws))["type"] == "session.created"
            assert server.metric("whisper_realtime_sessions") == 2
            async with connect(server) as third:
                event = validated_event(await recv(third))
                assert (event.type, event.error.type, event.error.code) == ("error", "server_error",
                                                                            "too_many_sessions")
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await asyncio.wait_for(third.recv(), STALL_S)
                assert info.value.rcvd.code == 1013  # try again later
            for ws in (first, second):
                await ws.send(update(vad=False))
                assert (await recv(ws))["type"] == "session.updated"
        assert server.metric('whisper_rejected_total{reason="too_many_sessions"}') >= 1

    asyncio.run(run())


@pytest.mark.parametrize("query, code", [("", "invalid_intent"), ("?intent=conversation", "invalid_intent"),
                                         ("?intent=transcription&model=gpt-5", "model_not_found")])
def test_another_intent_or_an_unknown_model_is_refused(server, query, code):
    async def run():
        async with connect(server, query) as ws:
            event = validated_event(await recv(ws))
            assert (event.error.type, event.error.code) == ("invalid_request_error", code)
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), STALL_S)
            assert info.value.rcvd.code == 1008

    asyncio.run(run())


def test_the_openai_client_opens_a_transcription_session(server):
    from openai import AsyncOpenAI

    async def run():
        client = AsyncOpenAI(base_url=server.url + "/v1", api_key=KEY)
        async with client.realtime.connect(model="tiny.en", extra_query={"intent": "transcription"}) as conn:
            created = await asyncio.wait_for(conn.recv(), STALL_S)
            assert created.type == "session.created" and created.session.type == "transcription"
            await conn.session.update(session={"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None}}})
            updated = await asyncio.wait_for(conn.recv(), STALL_S)
            assert updated.type == "session.updated" and updated.session.audio.input.turn_detection is None
            await conn.send({"type": "input_audio_buffer.commit"})  # an empty buffer: OpenAI's error
            error = await asyncio.wait_for(conn.recv(), STALL_S)
            assert (error.type, error.error.code) == ("error", "input_audio_buffer_commit_empty")

    asyncio.run(run())


def test_without_the_denial_extension_a_refused_handshake_is_a_close():
    """An ASGI server that cannot send an HTTP answer to a WebSocket handshake gets a close (its client sees 403)."""
    from whisper_model.server.limits import ApiKeyCheck
    from whisper_model.server.metrics import Metrics

    async def app(scope, receive, send):
        raise AssertionError("the app must not see a refused handshake")

    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "websocket", "path": "/v1/realtime", "headers": [(b"authorization", b"Bearer wrong")]}
    asyncio.run(ApiKeyCheck(app, key=KEY, metrics=Metrics(1))(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "invalid_api_key"}]
