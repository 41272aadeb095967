"""Client events of OpenAI's Realtime transcription protocol, parsed and validated into dataclasses.

    event = parse_client_event(text, session)   # SessionUpdate | AudioAppend | AudioCommit | AudioClear
    except ProtocolError as e: send(server_events.error(e))

Accepted: ``session.update`` (a transcription session: ``session.type == "transcription"``; ``audio.input``'s
``format`` (``audio/pcm`` at 24000 or 16000 Hz), ``transcription`` (``model``, ``language``, ``prompt``),
``turn_detection`` (``server_vad`` with ``threshold``, ``prefix_padding_ms``, ``silence_duration_ms``, or null)
and ``noise_reduction: null``; only the fields present change), ``input_audio_buffer.append`` (base64 PCM16,
little-endian mono), ``input_audio_buffer.commit``, ``input_audio_buffer.clear``. Anything else is refused with
a ``ProtocolError`` naming the field: an unknown event type or field, a wrong type, a value this server does not
do (another format or rate, semantic VAD, noise reduction, logprobs), bad base64, an odd byte count, or an append
of more than ``max_append_chars`` base64 characters (default ``MAX_APPEND_CHARS``: OpenAI's 15 MiB per event;
checked before decoding).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from ..errors import OptionError, WhisperError
from ..io.tokenizer import LANGUAGES
from .config import SAMPLE_RATES, SessionConfig, TurnDetection

MAX_APPEND_CHARS = 15 * 1024 * 1024  # base64 characters in one input_audio_buffer.append (OpenAI: 15 MiB an event)
ERROR_TYPE = "invalid_request_error"
# the codes ProtocolError carries (OpenAI's names where it has one)
INVALID_JSON, INVALID_TYPE, INVALID_VALUE = "invalid_json", "invalid_type", "invalid_value"
UNKNOWN_PARAMETER, MISSING_PARAMETER = "unknown_parameter", "missing_required_parameter"
UNSUPPORTED, AUDIO_TOO_LARGE = "unsupported_value", "audio_too_large"


class ProtocolError(WhisperError, ValueError):
    """A client event this server refuses. ``error()`` is OpenAI's error object (``type`` invalid_request_error,
    ``code``, ``message``, ``param``: the field, ``event_id``: the client event's id, when it had one)."""

    def __init__(self, code: str, message: str, param: Optional[str] = None, event_id: Optional[str] = None):
        super().__init__(message)
        self.code, self.message, self.param, self.event_id = code, message, param, event_id

    def error(self) -> dict:
        return {"type": ERROR_TYPE, "code": self.code, "message": self.message, "param": self.param,
                "event_id": self.event_id}


@dataclass(frozen=True)
class SessionUpdate:
    """The session's settings after the update (the fields it did not name are kept)."""

    session: SessionConfig
    event_id: Optional[str] = None


@dataclass(frozen=True)
class AudioAppend:
    """PCM16 little-endian mono bytes (an even count) at the session's rate."""

    audio: bytes
    event_id: Optional[str] = None


@dataclass(frozen=True)
class AudioCommit:
    event_id: Optional[str] = None


@dataclass(frozen=True)
class AudioClear:
    event_id: Optional[str] = None


ClientEvent = Union[SessionUpdate, AudioAppend, AudioCommit, AudioClear]


def parse_client_event(message: Union[str, bytes, Mapping[str, Any]], session: SessionConfig,
                       max_append_chars: int = MAX_APPEND_CHARS) -> ClientEvent:
    """One client event (JSON text or its decoded object) -> its dataclass; ``session``: the settings a
    ``session.update`` changes; ``max_append_chars``: the most base64 characters an append may carry (a server's
    limit). Raises ``ProtocolError`` (with the event's ``event_id`` when it has one)."""
    data = _load(message)
    event_id = data.get("event_id")
    if event_id is not None and not isinstance(event_id, str):
        raise ProtocolError(INVALID_TYPE, f"event_id must be a string, got {type(event_id).__name__}", "event_id")
    kind = data.get("type")
    try:
        if kind is None:
            raise ProtocolError(MISSING_PARAMETER, "the event has no 'type'", "type")
        if kind not in _PARSERS:
            raise ProtocolError(INVALID_VALUE, f"unsupported event type {kind!r}; a transcription session accepts "
                                f"{', '.join(sorted(_PARSERS))}", "type")
        if kind == "input_audio_buffer.append":
            return _append(data, event_id, max_append_chars)
        return _PARSERS[kind](data, session, event_id)
    except ProtocolError as e:
        e.event_id = event_id
        raise


def _load(message) -> dict:
    if isinstance(message, (str, bytes, bytearray)):
        try:
            message = json.loads(message)
        except (ValueError, UnicodeDecodeError) as e:
            raise ProtocolError(INVALID_JSON, f"the message is not valid JSON: {e}") from None
    if not isinstance(message, Mapping):
        raise ProtocolError(INVALID_TYPE, f"an event must be a JSON object, got {type(message).__name__}")
    return dict(message)


def _object(value, param: str) -> dict:
    if not isinstance(value, Mapping):
        raise ProtocolError(INVALID_TYPE, f"{param} must be an object, got {_json_type(value)}", param)
    return dict(value)


def _only(obj: Mapping, allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            param = f"{where}.{key}" if where else key
            raise ProtocolError(UNKNOWN_PARAMETER, f"unknown parameter {param!r}", param)


def _json_type(value) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _append(data: dict, event_id, max_chars: int) -> AudioAppend:
    _only(data, {"type", "event_id", "audio"}, "")
    if "audio" not in data:
        raise ProtocolError(MISSING_PARAMETER, "input_audio_buffer.append has no 'audio'", "audio")
    text = data["audio"]
    if not isinstance(text, str):
        raise ProtocolError(INVALID_TYPE, f"audio must be a base64 string, got {_json_type(text)}", "audio")
    if len(text) > max_chars:
        raise ProtocolError(AUDIO_TOO_LARGE, f"audio has {len(text)} base64 characters, more than the "
                            f"{max_chars} one append may carry: send it in smaller appends", "audio")
    try:
        audio = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProtocolError(INVALID_VALUE, f"audio is not valid base64: {e}", "audio") from None
    if len(audio) % 2:
        raise ProtocolError(INVALID_VALUE, f"audio has {len(audio)} bytes, an odd count: PCM16 has 2 bytes per "
                            f"sample", "audio")
    return AudioAppend(audio, event_id)


def _commit(data: dict, session: SessionConfig, event_id) -> AudioCommit:
    _only(data, {"type", "event_id"}, "")
    return AudioCommit(event_id)


def _clear(data: dict, session: SessionConfig, event_id) -> AudioClear:
    _only(data, {"type", "event_id"}, "")
    return AudioClear(event_id)


def _session_update(data: dict, current: SessionConfig, event_id) -> SessionUpdate:
    _only(data, {"type", "event_id", "session"}, "")
    if "session" not in data:
        raise ProtocolError(MISSING_PARAMETER, "session.update has no 'session'", "session")
    session = _object(data["session"], "session")
    _only(session, {"type", "audio", "include"}, "session")
    if session.get("type") != "transcription":
        raise ProtocolError(INVALID_VALUE, f"this server has transcription sessions only: session.type must be "
                            f"'transcription', got {session.get('type')!r}", "session.type")
    if session.get("include"):
        raise ProtocolError(UNSUPPORTED, f"session.include {session['include']!r} is not supported (no logprobs)",
                            "session.include")
    audio = _object(session.get("audio", {}), "session.audio")
    _only(audio, {"input"}, "session.audio")
    given = _object(audio.get("input", {}), "session.audio.input")
    _only(given, {"format", "noise_reduction", "transcription", "turn_detection"}, "session.audio.input")
    changes: dict[str, Any] = {}
    if "format" in given:
        changes["sample_rate"] = _sample_rate(given["format"], "session.audio.input.format")
    if given.get("noise_reduction") is not None:
        raise ProtocolError(UNSUPPORTED, "noise reduction is not supported: set noise_reduction to null or leave "
                            "it out", "session.audio.input.noise_reduction")
    if "transcription" in given:
        changes.update(_transcription(given["transcription"], "session.audio.input.transcription"))
    if "turn_detection" in given:
        changes["turn_detection"] = _turn_detection(given["turn_detection"], "session.audio.input.turn_detection")
    return SessionUpdate(dataclasses.replace(current, **changes), event_id)


def _sample_rate(value, where: str) -> int:
    fmt = _object(value, where)
    _only(fmt, {"type", "rate"}, where)
    if fmt.get("type", "audio/pcm") != "audio/pcm":
        raise ProtocolError(UNSUPPORTED, f"input format {fmt['type']!r} is not supported: use 'audio/pcm' (PCM16)",
                            f"{where}.type")
    rate = fmt.get("rate", SAMPLE_RATES[0])
    if isinstance(rate, bool) or rate not in SAMPLE_RATES:
        raise ProtocolError(UNSUPPORTED, f"input rate {rate!r} is not supported: use one of {SAMPLE_RATES}",
                            f"{where}.rate")
    return int(rate)


def _transcription(value, where: str) -> dict:
    if value is None:
        raise ProtocolError(UNSUPPORTED, "transcription cannot be turned off in a transcription session", where)
    given = _object(value, where)
    _only(given, {"model", "language", "prompt", "delay", "keywords", "languages"}, where)
    for key in ("delay", "keywords", "languages"):
        if given.get(key) is not None:
            raise ProtocolError(UNSUPPORTED, f"{where}.{key} is not supported (use language and prompt)",
                                f"{where}.{key}")
    out = {}
    for key in ("model", "language", "prompt"):
        if key in given:
            if given[key] is not None and not isinstance(given[key], str):
                raise ProtocolError(INVALID_TYPE, f"{where}.{key} must be a string or null, got "
                                    f"{_json_type(given[key])}", f"{where}.{key}")
            out[key] = given[key] or None
    if out.get("language") is not None and out["language"] not in LANGUAGES:
        raise ProtocolError(INVALID_VALUE, f"unsupported language {out['language']!r}: use an ISO-639-1 code "
                            f"Whisper knows (e.g. 'en', 'de', 'zh')", f"{where}.language")
    return out


def _turn_detection(value, where: str) -> Optional[TurnDetection]:
    if value is None:
        return None
    given = _object(value, where)
    _only(given, {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response",
                  "interrupt_response", "idle_timeout_ms"}, where)
    if given.get("type") != "server_vad":
        raise ProtocolError(UNSUPPORTED, f"turn_detection type {given.get('type')!r} is not supported: use "
                            f"'server_vad' or null", f"{where}.type")
    if given.get("idle_timeout_ms") is not None:
        raise ProtocolError(UNSUPPORTED, "idle_timeout_ms is not supported", f"{where}.idle_timeout_ms")
    settings = {k: given[k] for k in ("threshold", "prefix_padding_ms", "silence_duration_ms")
                if given.get(k) is not None}
    try:
        return TurnDetection(**settings)
    except OptionError as e:
        field = str(e).split()[0].rpartition(".")[2]
        raise ProtocolError(INVALID_VALUE, str(e), f"{where}.{field}") from None


_PARSERS = {"session.update": _session_update, "input_audio_buffer.append": _append,  # append: its own call
            "input_audio_buffer.commit": _commit, "input_audio_buffer.clear": _clear}

__all__ = ["MAX_APPEND_CHARS", "AudioAppend", "AudioClear", "AudioCommit", "ClientEvent", "ProtocolError",
           "SessionUpdate", "parse_client_event"]
