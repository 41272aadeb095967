"""``python -m whisper_model.stream FILE --url ws://HOST:PORT/v1/realtime``: a file streamed through OpenAI's Realtime
transcription protocol, as a microphone would send it; deltas are printed as they arrive, then each completed item.

    python -m whisper_model.stream talk.mp3 --url ws://127.0.0.1:8000/v1/realtime            # real time
    python -m whisper_model.stream talk.mp3 --url ws://127.0.0.1:8000/v1/realtime --speed 0  # as fast as possible

The file is decoded with PyAV to 24 kHz PCM16 (OpenAI's input format). The client sends ``session.update``
(transcription, the language, the turn detection), then an ``input_audio_buffer.append`` per 100 ms of audio, paced
at ``--speed`` times real time. At the end: with server_vad, ``silence_duration_ms`` of silence more (so the
speech in progress stops); with turn detection none, a commit. A ``session.update`` that changes nothing follows:
its ``session.updated`` answer says every append before it was handled, and the client waits for the completed
(or failed) transcription of every item committed by then. Exit status 0; 1 when the server sent an error; 2 for
a missing file, a URL that cannot be reached or a refused connection (one line naming the problem).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from typing import Optional, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from ..errors import AudioError, audio_errors
from ..io.audio import load_audio

RATE = 24000
CHUNK_S = 0.1  # audio per append
SILENCE_MS = 500  # server_vad's silence_duration_ms (OpenAI's default), sent after the file


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m whisper_model.stream", description="stream an audio file to a "
                                "realtime transcription server (OpenAI's Realtime protocol) and print its text")
    p.add_argument("file", help="any audio or video file PyAV (FFmpeg) reads")
    p.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime", help="the server's realtime endpoint "
                   "(?intent=transcription is added; default: ws://127.0.0.1:8000/v1/realtime)")
    p.add_argument("--speed", type=float, default=1.0, help="times real time the audio is sent at (0: as fast "
                   "as possible; default 1)")
    p.add_argument("--language", default=None, help="ISO-639-1 code (default: detected by the server)")
    p.add_argument("--api_key", default=None, help="sent as 'Authorization: Bearer KEY'")
    p.add_argument("--turn_detection", choices=["server_vad", "none"], default="server_vad",
                   help="server_vad: the server cuts items at pauses (default); none: the whole file is one item, "
                   "committed at its end")
    return p


def pcm16(path: str) -> bytes:
    """The file as 24 kHz PCM16 little-endian mono (``AudioError`` naming the problem)."""
    with audio_errors():
        samples = load_audio(path, sr=RATE)
    return np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tobytes()


def realtime_url(url: str) -> str:
    """``url`` with ``intent=transcription`` in its query (kept if given)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("intent", "transcription")
    return urlunsplit(parts._replace(query=urlencode(query)))


def session_update(language: Optional[str], turn_detection: str) -> dict:
    vad = {"type": "server_vad", "silence_duration_ms": SILENCE_MS} if turn_detection == "server_vad" else None
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": RATE}, "transcription": {"language": language},
        "turn_detection": vad}}}}


class Printer:
    """Server events -> lines: deltas as they come (one line per item, written on as it grows), each completed
    item as ``[item seconds] text``, errors on ``err``. ``completed``: the transcripts, in order; ``errors``."""

    def __init__(self, out: Optional[TextIO] = None, err: Optional[TextIO] = None):
        self.out, self.err = out or sys.stdout, err or sys.stderr  # (the streams of now, not of the import)
        self.completed: list[str] = []
        self.errors: list[dict] = []
        self.committed: set[str] = set()
        self.done: set[str] = set()
        self._open_line: Optional[str] = None  # the item whose deltas the current line shows

    def show(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "conversation.item.input_audio_transcription.delta":
            if self._open_line != event["item_id"]:
                self._end_line()
                self._open_line = event["item_id"]
                self.out.write("... ")
            self.out.write(event["delta"])
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._end_line()
            self.completed.append(event["transcript"])
            self.done.add(event["item_id"])
            seconds = (event.get("usage") or {}).get("seconds", 0.0)
            self.out.write(f"[{event['item_id']} {seconds:.1f} s] {event['transcript']}\n")
        elif kind == "input_audio_buffer.committed":
            self.committed.add(event["item_id"])
        elif kind == "conversation.item.input_audio_transcription.failed":
            self._end_line()
            self.errors.append(event["error"])
            self.done.add(event["item_id"])
            self.err.write(f"item {event['item_id']} failed: {event['error'].get('message')}\n")
        elif kind == "error":
            self._end_line()
            self.errors.append(event["error"])
            self.err.write(f"error from the server: {event['error'].get('message')} "
                           f"({event['error'].get('code')})\n")
        self.out.flush()

    def _end_line(self) -> None:
        if self._open_line is not None:
            self.out.write("\n")
            self._open_line = None


async def send_audio(ws, pcm: bytes, speed: float, update: dict) -> None:
    """Appends of ``CHUNK_S`` each, paced at ``speed`` x real time; then the end and the barrier (the module)."""
    step = int(RATE * CHUNK_S) * 2
    vad = update["session"]["audio"]["input"]["turn_detection"] is not None
    if vad:
        pcm += bytes(RATE * (SILENCE_MS + 100) // 1000 * 2)
    began = time.monotonic()
    for k, offset in enumerate(range(0, len(pcm), step)):
        if speed > 0:
            await asyncio.sleep(max(began + k * CHUNK_S / speed - time.monotonic(), 0.0))
        audio = base64.b64encode(pcm[offset:offset + step]).decode("ascii")
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
    if not vad:
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    await ws.send(json.dumps(update))


async def stream(args: argparse.Namespace, printer: Printer) -> None:
    """Stream ``args.file`` and print until every item committed is transcribed (or the server closes)."""
    import websockets

    pcm = pcm16(args.file)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    async with websockets.connect(realtime_url(args.url), additional_headers=headers, max_size=None) as ws:
        first = json.loads(await ws.recv())
        printer.show(first)
        if first.get("type") != "session.created":
            return
        update = session_update(args.language, args.turn_detection)
        await ws.send(json.dumps(update))
        sender = asyncio.ensure_future(send_audio(ws, pcm, args.speed, update))
        updated = 0  # the first session.updated answers the settings, the second the barrier
        try:
            async for message in ws:
                event = json.loads(message)
                printer.show(event)
                updated += event.get("type") == "session.updated"
                if updated == 2 and printer.committed <= printer.done:
                    return
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.speed < 0:
        print(f"error: --speed must be >= 0, got {args.speed}", file=sys.stderr)
        return 2
    import websockets

    printer = Printer()
    try:
        asyncio.run(stream(args, printer))
    except AudioError as e:
        print(f"error: cannot read {args.file!r} as audio: {e}", file=sys.stderr)
        return 2
    except websockets.InvalidStatus as e:
        print(f"error: {args.url} refused the connection: HTTP {e.response.status_code} "
              f"{e.response.body.decode(errors='replace').strip()}", file=sys.stderr)
        return 2
    except (OSError, websockets.InvalidURI, websockets.InvalidHandshake, asyncio.TimeoutError) as e:
        print(f"error: cannot connect to {args.url}: {e}", file=sys.stderr)
        return 2
    except websockets.ConnectionClosed as e:
        print(f"error: the server closed the connection: {e}", file=sys.stderr)
        return 1
    return 1 if printer.errors else 0


__all__ = ["Printer", "build_parser", "main", "realtime_url", "session_update"]
