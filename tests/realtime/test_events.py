"""Client events parsed and refused as OpenAI's protocol says; every server event validates with the ``openai``
package's own pydantic models (validated, not constructed, and no field left over as an unknown extra)."""
from __future__ import annotations

import base64
import json

import pydantic
import pytest
from openai.types.realtime import (ConversationItemInputAudioTranscriptionCompletedEvent,
                                   ConversationItemInputAudioTranscriptionFailedEvent,
                                   ConversationItemInputAudioTranscriptionDeltaEvent, InputAudioBufferAppendEvent,
                                   InputAudioBufferClearedEvent, InputAudioBufferCommittedEvent,
                                   InputAudioBufferSpeechStartedEvent, InputAudioBufferSpeechStoppedEvent,
                                   RealtimeErrorEvent, RealtimeTranscriptionSessionCreateRequest,
                                   SessionCreatedEvent, SessionUpdatedEvent, SessionUpdateEvent)

from whisper_model.realtime import server_events as out
from whisper_model.realtime.config import SessionConfig, TurnDetection
from whisper_model.realtime.events import (MAX_APPEND_CHARS, AudioAppend, AudioClear, AudioCommit, ProtocolError,
                                           SessionUpdate, parse_client_event)

from ._openai import validated

DEFAULT = SessionConfig()


def update(session: dict, event_id="evt_1") -> dict:
    return {"type": "session.update", "event_id": event_id, "session": session}


FULL_UPDATE = update({"type": "transcription", "audio": {"input": {
    "format": {"type": "audio/pcm", "rate": 24000}, "noise_reduction": None,
    "transcription": {"model": "whisper-1", "language": "de", "prompt": "Grüße"},
    "turn_detection": {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200,
                       "silence_duration_ms": 700}}}})


def test_a_full_session_update_is_openais_and_sets_every_field():
    validated(SessionUpdateEvent, FULL_UPDATE)  # what we accept is what the openai client sends
    event = parse_client_event(json.dumps(FULL_UPDATE), DEFAULT)
    assert event == SessionUpdate(SessionConfig(24000, "whisper-1", "de", "Grüße", TurnDetection(0.6, 200, 700)),
                                  "evt_1")


def test_an_update_changes_only_the_fields_it_names():
    current = SessionConfig(16000, "m", "en", "p", None)
    event = parse_client_event(update({"type": "transcription", "audio": {"input": {
        "transcription": {"language": "fr"}}}}), current)
    assert event.session == SessionConfig(16000, "m", "fr", "p", None)
    event = parse_client_event(update({"type": "transcription", "audio": {"input": {
        "turn_detection": {"type": "server_vad"}, "format": {"type": "audio/pcm", "rate": 24000}}}}), current)
    assert event.session == SessionConfig(24000, "m", "en", "p", TurnDetection())  # OpenAI's defaults
    off = parse_client_event(update({"type": "transcription", "audio": {"input": {"turn_detection": None}}}),
                             DEFAULT)
    assert off.session.turn_detection is None and DEFAULT.turn_detection == TurnDetection(0.5, 300, 500)


def test_audio_events():
    pcm = (b"\x01\x00\xff\x7f") * 3
    append = {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode(), "event_id": "a"}
    validated(InputAudioBufferAppendEvent, append)
    assert parse_client_event(append, DEFAULT) == AudioAppend(pcm, "a")
    assert parse_client_event('{"type": "input_audio_buffer.commit"}', DEFAULT) == AudioCommit(None)
    assert parse_client_event(b'{"type": "input_audio_buffer.clear", "event_id": "c"}', DEFAULT) == AudioClear("c")


def refused(message, code: str, param, *words: str, event_id="evt_9") -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_event(message, DEFAULT)
    problem = info.value
    assert (problem.code, problem.param, problem.event_id) == (code, param, event_id)
    for word in words:
        assert word in problem.message, problem.message
    error = problem.error()
    assert error["type"] == "invalid_request_error" and error["event_id"] == event_id
    validated(RealtimeErrorEvent, out.error(problem))
    return problem


def append(audio: str) -> dict:
    return {"type": "input_audio_buffer.append", "audio": audio, "event_id": "evt_9"}


def test_bad_audio_is_refused():
    refused(append("AAE=!!"), "invalid_value", "audio", "base64")
    refused(append("AAEC"), "invalid_value", "audio", "3 bytes", "odd")
    refused(append("A" * (MAX_APPEND_CHARS + 4)), "audio_too_large", "audio", str(MAX_APPEND_CHARS))
    refused({"type": "input_audio_buffer.append", "audio": 12, "event_id": "evt_9"}, "invalid_type", "audio",
            "string")
    refused({"type": "input_audio_buffer.append", "event_id": "evt_9"}, "missing_required_parameter", "audio")


def test_bad_events_are_refused():
    refused({"type": "response.create", "event_id": "evt_9"}, "invalid_value", "type", "response.create",
            "input_audio_buffer.append")
    refused({"event_id": "evt_9"}, "missing_required_parameter", "type")
    refused('{"type": "input_audio_buffer.commit"', "invalid_json", None, "JSON", event_id=None)
    refused("[1, 2]", "invalid_type", None, "object", event_id=None)
    refused({"type": "input_audio_buffer.commit", "event_id": "evt_9", "extra": 1}, "unknown_parameter", "extra")


@pytest.mark.parametrize("audio_input, param, words", [
    ({"format": {"type": "audio/pcm", "rate": 44100}}, "format.rate", ["44100", "24000", "16000"]),
    ({"format": {"type": "audio/pcmu"}}, "format.type", ["audio/pcmu", "audio/pcm"]),
    ({"turn_detection": {"type": "semantic_vad"}}, "turn_detection.type", ["semantic_vad", "server_vad"]),
    ({"turn_detection": {"type": "server_vad", "threshold": 1.5}}, "turn_detection.threshold", ["threshold", "1.5"]),
    ({"turn_detection": {"type": "server_vad", "silence_duration_ms": -1}}, "turn_detection.silence_duration_ms",
     ["silence_duration_ms", "-1"]),
    ({"transcription": {"language": "xx"}}, "transcription.language", ["'xx'"]),
    ({"transcription": {"prompt": 3}}, "transcription.prompt", ["prompt", "string"]),
    ({"noise_reduction": {"type": "near_field"}}, "noise_reduction", ["noise reduction"]),
    ({"speed": 2}, "speed", ["speed"]),
])
def test_bad_session_settings_are_refused(audio_input, param, words):
    code = {"speed": "unknown_parameter", "turn_detection.threshold": "invalid_value",
            "turn_detection.silence_duration_ms": "invalid_value", "transcription.language": "invalid_value",
            "transcription.prompt": "invalid_type"}.get(param, "unsupported_value")
    refused(update({"type": "transcription", "audio": {"input": audio_input}}, "evt_9"), code,
            f"session.audio.input.{param}", *words)


def test_a_realtime_session_is_refused():
    refused(update({"type": "realtime"}, "evt_9"), "invalid_value", "session.type", "transcription", "'realtime'")


SESSIONS = [DEFAULT, SessionConfig(24000, "whisper-1", "en", "Hello.", None),
            SessionConfig(turn_detection=TurnDetection(0.3, 0, 1200))]


@pytest.mark.parametrize("config", SESSIONS)
def test_session_events_validate(config):
    for build, model in ((out.session_created, SessionCreatedEvent), (out.session_updated, SessionUpdatedEvent)):
        event = validated(model, build(config))
        assert isinstance(event.session, RealtimeTranscriptionSessionCreateRequest)
        assert event.session.audio.input.format.rate == config.sample_rate
        vad = event.session.audio.input.turn_detection
        assert (vad is None) == (config.turn_detection is None)
        if vad is not None:
            assert (vad.threshold, vad.prefix_padding_ms, vad.silence_duration_ms) == (
                config.turn_detection.threshold, config.turn_detection.prefix_padding_ms,
                config.turn_detection.silence_duration_ms)


def test_a_16_khz_session_differs_from_openais_types_only_in_its_rate():
    event = out.session_updated(SessionConfig(16000))
    with pytest.raises(pydantic.ValidationError) as info:
        RealtimeTranscriptionSessionCreateRequest.model_validate(event["session"])
    errors = info.value.errors()  # the format union's pcm branch refuses the rate; pcmu / pcma their type
    assert all(e["loc"][:3] == ("audio", "input", "format") for e in errors)
    assert [e["loc"][3:] for e in errors if e["loc"][3] == "AudioPCM"] == [("AudioPCM", "rate")]
    event["session"]["audio"]["input"]["format"]["rate"] = 24000
    validated(SessionUpdatedEvent, event)


def test_buffer_and_transcription_events_validate():
    item = out.new_id("item")
    started = validated(InputAudioBufferSpeechStartedEvent, out.speech_started(item, out.samples_to_ms(24000)))
    assert (started.item_id, started.audio_start_ms) == (item, 1500)
    assert validated(InputAudioBufferSpeechStoppedEvent, out.speech_stopped(item, 2000)).audio_end_ms == 2000
    assert validated(InputAudioBufferCommittedEvent, out.committed(item, "item_0")).previous_item_id == "item_0"
    validated(InputAudioBufferCommittedEvent, out.committed(item))
    validated(InputAudioBufferClearedEvent, out.cleared())
    assert validated(ConversationItemInputAudioTranscriptionDeltaEvent,
                     out.transcription_delta(item, " Hello")).delta == " Hello"
    done = validated(ConversationItemInputAudioTranscriptionCompletedEvent,
                     out.transcription_completed(item, "Hello world.", 1.25))
    assert (done.transcript, done.usage.seconds) == ("Hello world.", 1.25)
    failed = validated(ConversationItemInputAudioTranscriptionFailedEvent,
                       out.transcription_failed(item, "RuntimeError: no rows", "transcription_failed"))
    assert (failed.item_id, failed.error.message) == (item, "RuntimeError: no rows")
    server = validated(RealtimeErrorEvent, out.server_error("the model failed", "server_error"))
    assert server.error.type == "server_error"
    ids = {out.new_id("event") for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("event_") for i in ids)
