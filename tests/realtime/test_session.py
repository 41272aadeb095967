"""A session end to end without a transport or a model: JSON client events in, validated server events and
committed utterances out; refused events answered with errors; transcripts as delta / completed events."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from whisper_model.realtime.config import SessionConfig, TurnDetection
from whisper_model.realtime.session import RealtimeSession
from whisper_model.realtime.transcript import Transcript

from ._clips import SR, pcm16, speech
from ._openai import validated_event


def append(samples: np.ndarray) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm16(samples)).decode()})


def manual(rate: int) -> str:
    return json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": rate}, "turn_detection": None,
        "transcription": {"language": "en"}}}}})


def test_a_manual_session():
    session = RealtimeSession()
    (created,) = session.start()
    assert validated_event(created).session.audio.input.turn_detection.type == "server_vad"
    updated = session.handle(manual(24000)).events
    assert validated_event(updated[0]).session.audio.input.turn_detection is None
    assert session.config == SessionConfig(24000, None, "en", None, None)
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(SR * 3 // 2) / 24000)
    assert session.handle(append(tone)).events == []
    result = session.handle('{"type": "input_audio_buffer.commit", "event_id": "c1"}')
    (utterance,) = result.utterances
    assert [validated_event(e).type for e in result.events] == ["input_audio_buffer.committed"]
    assert len(utterance.samples) == SR  # 1.5 s at 24 kHz -> 1 s at 16 kHz


def test_refused_events_are_answered_and_change_nothing():
    session = RealtimeSession()
    for message, code in (('{"type": "response.create", "event_id": "x"}', "invalid_value"),
                          ('{"type": "input_audio_buffer.append", "audio": "AAE", "event_id": "x"}', "invalid_value"),
                          ('{"type": "input_audio_buffer.commit", "event_id": "x"}', "input_audio_buffer_commit_empty"),
                          ("not json", "invalid_json")):
        (event,) = session.handle(message).events
        error = validated_event(event).error
        assert (error.type, error.code) == ("invalid_request_error", code)
        assert error.event_id == (None if message == "not json" else "x")
    assert session.config == SessionConfig() and session.buffer.samples == 0


def test_an_update_of_the_turn_detection_keeps_offsets_and_the_item_chain():
    session = RealtimeSession(SessionConfig(sample_rate=16000, turn_detection=None))
    session.handle(append(np.zeros(SR // 2, np.float32)))
    (first,) = session.handle('{"type": "input_audio_buffer.commit"}').utterances
    update = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}}}}}
    session.handle(json.dumps(update))
    assert session.config.turn_detection == TurnDetection(silence_duration_ms=400)
    audio = speech()
    events = session.handle(append(np.concatenate([audio, np.zeros(SR, np.float32)]))).events
    types = [validated_event(e).type for e in events]
    assert types == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                     "input_audio_buffer.committed"]
    assert events[0]["audio_start_ms"] >= 500 and events[2]["previous_item_id"] == first.item_id


def test_a_transcript_sends_each_committed_text_and_completes_with_their_join():
    transcript = Transcript("item_1")
    events = []
    for text in ("  ", " The quick", " brown", "", " fox jumps over."):  # a live stream's Committed texts
        events += transcript.committed(text)
    events += transcript.finish(2.5)
    parsed = [validated_event(e) for e in events]
    deltas = [e.delta for e in parsed if e.type.endswith(".delta")]
    assert deltas == ["The quick", " brown", " fox jumps over."]  # the leading spaces dropped, nothing empty
    assert parsed[-1].type.endswith(".completed") and parsed[-1].transcript == "".join(deltas)
    assert parsed[-1].usage.seconds == 2.5 and {e.item_id for e in parsed} == {"item_1"}
    with pytest.raises(RuntimeError, match="completed"):
        transcript.committed(" more")


def test_an_item_that_committed_nothing_completes_empty():
    (done,) = Transcript("item_2").finish(0.4)
    assert validated_event(done).transcript == ""


def test_without_silero_vad_sessions_start_with_manual_turns_and_server_vad_is_refused(monkeypatch):
    """A server without the silero-vad package: the session says it has no turn detection (OpenAI's default is
    server_vad), an update asking for it gets an error naming the package, and manual turns work."""
    import whisper_model.realtime.session as session_module

    monkeypatch.setattr(session_module, "vad_available", lambda: False)
    session = RealtimeSession()
    (created,) = session.start()
    assert validated_event(created).session.audio.input.turn_detection is None
    update = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "turn_detection": {"type": "server_vad"}}}}}
    (event,) = session.handle(json.dumps(update)).events
    error = validated_event(event).error
    assert (error.code, error.param) == ("turn_detection_unavailable", "session.audio.input.turn_detection")
    assert "silero-vad" in error.message and session.config.turn_detection is None
    session.handle(manual(16000))
    session.handle(append(np.full(SR // 2, 0.1, np.float32)))
    (utterance,) = session.handle('{"type": "input_audio_buffer.commit"}').utterances
    assert len(utterance.samples) == SR // 2
