"""The server's events of OpenAI's Realtime transcription protocol, as JSON-ready dicts.

Names and shapes are those of the ``openai`` package's ``openai.types.realtime`` models (``SessionCreatedEvent``,
``InputAudioBufferSpeechStartedEvent``, ``ConversationItemInputAudioTranscriptionDeltaEvent``, ``RealtimeErrorEvent``
...; tests/realtime validates every one with them); this module does not import ``openai``. Each event gets a new
``event_id``; item ids are the caller's (``new_id("item")``). Times are milliseconds of all audio the session has
received (``samples_to_ms`` from 16 kHz sample offsets).
"""
from __future__ import annotations

import uuid
from typing import Optional

from .config import SessionConfig
from .events import ProtocolError

SAMPLE_RATE = 16000  # of the offsets given to samples_to_ms (the model's rate, after intake)


def new_id(prefix: str) -> str:
    """A fresh id in OpenAI's style: ``event_…``, ``item_…``, ``sess_…``."""
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def samples_to_ms(samples: int) -> int:
    return int(samples) * 1000 // SAMPLE_RATE


def session_object(config: SessionConfig) -> dict:
    """The effective settings as a ``RealtimeTranscriptionSessionCreateRequest``. A 16 kHz session reports
    ``rate: 16000``, which OpenAI's types (24000 only) do not allow: it is this server's extension."""
    vad = config.turn_detection
    turn_detection = None if vad is None else {
        "type": "server_vad", "threshold": vad.threshold, "prefix_padding_ms": vad.prefix_padding_ms,
        "silence_duration_ms": vad.silence_duration_ms}
    return {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": config.sample_rate},
        "noise_reduction": None,
        "transcription": {"model": config.model, "language": config.language, "prompt": config.prompt},
        "turn_detection": turn_detection}}}


def session_created(config: SessionConfig) -> dict:
    return {"type": "session.created", "event_id": new_id("event"), "session": session_object(config)}


def session_updated(config: SessionConfig) -> dict:
    return {"type": "session.updated", "event_id": new_id("event"), "session": session_object(config)}


def speech_started(item_id: str, audio_start_ms: int) -> dict:
    return {"type": "input_audio_buffer.speech_started", "event_id": new_id("event"), "item_id": item_id,
            "audio_start_ms": int(audio_start_ms)}


def speech_stopped(item_id: str, audio_end_ms: int) -> dict:
    return {"type": "input_audio_buffer.speech_stopped", "event_id": new_id("event"), "item_id": item_id,
            "audio_end_ms": int(audio_end_ms)}


def committed(item_id: str, previous_item_id: Optional[str] = None) -> dict:
    return {"type": "input_audio_buffer.committed", "event_id": new_id("event"), "item_id": item_id,
            "previous_item_id": previous_item_id}


def cleared() -> dict:
    return {"type": "input_audio_buffer.cleared", "event_id": new_id("event")}


def transcription_delta(item_id: str, delta: str) -> dict:
    return {"type": "conversation.item.input_audio_transcription.delta", "event_id": new_id("event"),
            "item_id": item_id, "content_index": 0, "delta": delta}


def transcription_completed(item_id: str, transcript: str, seconds: float) -> dict:
    """The item's whole transcript; usage: ``seconds`` of its audio (OpenAI's duration-billed usage)."""
    return {"type": "conversation.item.input_audio_transcription.completed", "event_id": new_id("event"),
            "item_id": item_id, "content_index": 0, "transcript": transcript,
            "usage": {"type": "duration", "seconds": float(seconds)}}


def transcription_failed(item_id: str, message: str, code: Optional[str] = None) -> dict:
    """The item's transcription could not be done (OpenAI's event for it; the session goes on)."""
    return {"type": "conversation.item.input_audio_transcription.failed", "event_id": new_id("event"),
            "item_id": item_id, "content_index": 0,
            "error": {"type": "server_error", "code": code, "message": message, "param": None}}


def error(problem: ProtocolError) -> dict:
    return {"type": "error", "event_id": new_id("event"), "error": problem.error()}


def server_error(message: str, code: Optional[str] = None) -> dict:
    """A failure on the server's side (``type`` server_error), not the client's event."""
    return {"type": "error", "event_id": new_id("event"),
            "error": {"type": "server_error", "code": code, "message": message, "param": None, "event_id": None}}


__all__ = ["cleared", "committed", "error", "new_id", "samples_to_ms", "server_error", "session_created",
           "session_object", "session_updated", "speech_started", "speech_stopped", "transcription_completed",
           "transcription_delta", "transcription_failed"]
