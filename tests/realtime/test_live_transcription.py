"""Items transcribed while they are streamed: clips sent in 100 ms appends to ``/v1/realtime`` (tiny.en in this
process, its worker's live streams) through raw ``websockets``, the official ``openai`` client and
``python -m whisper_model.stream``. Accuracy is held to offline ``transcribe`` on the same model (pooled WER within
2 points, against MANIFEST.tsv's transcripts, Whisper's English normalizer); deltas join to their item's
completed text; silence gives no item; server_vad cuts at a 2 s pause; a client that goes away frees its stream.

Appends are sent as fast as the socket takes them (the scheduler decodes what has arrived); every wait is for an
event (a ``session.updated`` answering a barrier ``session.update``, a completed item, the worker's streams dict
emptied), bounded only by ``STALL_S`` against a stall.
"""
from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

from _requires import require

for _module in ("fastapi", "uvicorn", "websockets", "openai", "httpx"):
    require(_module)

import websockets  # noqa: E402

from whisper_model.cli.summarize import score  # noqa: E402
from whisper_model.io.audio import load_audio  # noqa: E402
from whisper_model.server.config import ServerConfig  # noqa: E402

from ._clips import AUDIO, SR  # noqa: E402
from ._live_server import STALL_S, LiveServer, append, chunks, pcm16, tiny_en, update, wait_until  # noqa: E402
from ._openai import validated_event  # noqa: E402

# 3 s, 3.3 s, 5.3 s, 7.1 s of one reader: 52 words
CLIPS = ["en_librivox_0880.wav", "en_librivox_0930.wav", "en_librivox_0890.wav", "en_librivox_0870.wav"]
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


def reference(name: str) -> str:
    import csv

    with open(AUDIO.parent / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}[name]["reference_transcript"]


def clip(name: str) -> np.ndarray:
    path = AUDIO / name
    if not path.is_file():
        pytest.fail(f"shared clip missing: {path.resolve()} (expected <repo>/../shared/data/audio)")
    return np.asarray(load_audio(str(path)), np.float32)


@pytest.fixture(scope="module")
def server():
    srv = LiveServer(ServerConfig(batch_size=4))
    yield srv
    srv.stop()


async def recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), STALL_S))


async def stream(server, samples: np.ndarray, vad: bool = True) -> list[dict]:
    """``samples`` (16 kHz) sent in 100 ms appends (then a commit without VAD); every server event until the
    barrier's ``session.updated`` has come and every committed item is completed."""
    async with websockets.connect(server.ws + "?intent=transcription", open_timeout=STALL_S) as ws:
        assert (await recv(ws))["type"] == "session.created"
        await ws.send(update(rate=16000, vad=vad))
        assert (await recv(ws))["type"] == "session.updated"
        for piece in chunks(pcm16(samples)):
            await ws.send(append(piece))
        if not vad:
            await ws.send('{"type": "input_audio_buffer.commit"}')
        await ws.send(update(rate=16000, vad=vad))  # answered after every append before it
        return await until_completed(ws)


async def until_completed(ws) -> list[dict]:
    events, barrier = [], False
    while True:
        event = await recv(ws)
        if event["type"] != "session.updated":  # a 16 kHz session's: this server's extension of OpenAI's types
            validated_event(event)
        events.append(event)
        assert event["type"] != "error", event
        barrier = barrier or event["type"] == "session.updated"
        committed = {e["item_id"] for e in events if e["type"] == "input_audio_buffer.committed"}
        if barrier and committed == {e["item_id"] for e in events if e["type"] == COMPLETED}:
            return events


def items(events: list[dict]) -> list[tuple[str, str]]:
    """(joined deltas, completed transcript) per item, in order of completion."""
    return [("".join(d["delta"] for d in events if d["type"] == DELTA and d["item_id"] == e["item_id"]),
             e["transcript"]) for e in events if e["type"] == COMPLETED]


def test_streamed_clips_are_as_accurate_as_offline_and_deltas_join_to_each_item(server):
    """Each clip one item (turn detection none: the audio offline ``transcribe`` gets, committed at its end)."""
    from whisper_model.transcribe import transcribe_batch

    model = tiny_en()
    audios = [clip(name) for name in CLIPS]
    streamed = [items(asyncio.run(stream(server, audio, vad=False))) for audio in audios]
    offline = transcribe_batch(model.model, audios, tokenizer=model.tokenizer, language="en", batch_size=4)
    live_errors = offline_errors = words = 0
    texts = []
    for name, done, (segments, _) in zip(CLIPS, streamed, offline):
        ((deltas, live),) = done
        assert deltas == live  # a client joining the deltas has the completed text
        alone = "".join(s.text for s in segments)
        _, errors, units = score(reference(name), live, "en")
        offline_errors += score(reference(name), alone, "en")[1]
        live_errors, words = live_errors + errors, words + units
        texts.append(f"{name}: live {live!r}, offline {alone!r}")
    assert live_errors / words <= offline_errors / words + 0.02, \
        f"{live_errors} word errors live, {offline_errors} offline, of {words}:\n" + "\n".join(texts)
    wait_until(lambda: server.worker.streams == {})


def test_silence_gives_no_item(server):
    events = asyncio.run(stream(server, np.zeros(3 * SR, np.float32)))
    assert [e["type"] for e in events] == ["session.updated"]


def test_server_vad_cuts_two_utterances_at_a_two_second_pause(server):
    first, second = clip("en_librivox_0880.wav"), clip("en_librivox_0930.wav")
    audio = np.concatenate([first, np.zeros(2 * SR, np.float32), second, np.zeros(SR, np.float32)])
    events = asyncio.run(stream(server, audio))
    assert [e["type"] for e in events if e["type"].startswith("input_audio_buffer")] == [
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed"] * 2
    (_, one), (_, two) = items(events)
    assert "young man" in one.lower() and "amiable" in two.lower()  # tiny.en: "He was not an old-sposed young man."


def test_a_client_that_goes_away_frees_its_stream_at_once(server):
    cancelled = server.metric("whisper_cancelled_total")

    async def run():
        async with websockets.connect(server.ws + "?intent=transcription", open_timeout=STALL_S) as ws:
            assert (await recv(ws))["type"] == "session.created"
            await ws.send(update(rate=16000, vad=False))  # the item stays open: only a commit would end it
            for piece in chunks(pcm16(clip("en_librivox_0880.wav")))[:10]:
                await ws.send(append(piece))
            await ws.send(update(rate=16000, vad=False))
            assert (await recv(ws))["type"] == "session.updated"
            assert (await recv(ws))["type"] == "session.updated"
            await asyncio.to_thread(wait_until, lambda: len(server.worker.streams) == 1)

    asyncio.run(run())
    wait_until(lambda: server.worker.streams == {})
    wait_until(lambda: server.metric("whisper_cancelled_total") == cancelled + 1)


def test_the_openai_client_streams_an_item_at_24_khz(server):
    from openai import AsyncOpenAI

    clip("en_librivox_0930.wav")  # fails naming the shared folder when it is missing
    pcm = pcm16(np.asarray(load_audio(str(AUDIO / "en_librivox_0930.wav"), sr=24000), np.float32))

    async def run():
        client = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused")
        async with client.realtime.connect(model="tiny.en", extra_query={"intent": "transcription"}) as conn:
            assert (await asyncio.wait_for(conn.recv(), STALL_S)).type == "session.created"
            await conn.session.update(session={"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None,
                "transcription": {"model": "tiny.en", "language": "en"}}}})
            for piece in chunks(pcm, rate=24000):
                await conn.input_audio_buffer.append(audio=base64.b64encode(piece).decode())
            await conn.input_audio_buffer.commit()
            deltas = []
            async for event in conn:
                assert event.type != "error", event
                if event.type == DELTA:
                    deltas.append(event.delta)
                if event.type == COMPLETED:
                    return "".join(deltas), event.transcript

    deltas, transcript = asyncio.run(asyncio.wait_for(run(), STALL_S))
    assert deltas == transcript and "he might even have been made amiable himself" in transcript.lower()


def test_the_stream_command_prints_the_completed_items(server, capsys):
    from whisper_model.cli.stream import main

    path = str(AUDIO / "en_librivox_0880.wav")
    assert main([path, "--url", server.ws, "--speed", "0", "--language", "en", "--turn_detection", "none"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("[item_") and "young man" in out[-1].lower()
