"""One realtime transcription session's protocol, apart from the transport and the model.

    session = RealtimeSession()
    send(session.start())                      # [session.created]
    result = session.handle(message)           # one client event (JSON text or its object)
    send(result.events)                        # session.updated, speech_started / _stopped, committed, cleared, error
    result.utterances                          # committed audio to transcribe (session.config: language, prompt)
    session.buffer.speech()                    # the utterance in progress so far, for interim hypotheses

A refused event is answered with an ``error`` event and changes nothing; the session goes on (``models``: the
transcription models an update may name, as the server serves them). A ``session.update``
that changes the input rate or the turn detection starts a new input buffer (its offsets and item chain go on;
audio not yet committed is dropped, as by a clear); other settings (model, language, prompt) apply to the next
utterances.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional, Union

from ..io.silero import vad_available

from . import server_events as out
from .config import SessionConfig
from .events import (MAX_APPEND_CHARS, AudioAppend, AudioClear, AudioCommit, ProtocolError, SessionUpdate,
                     parse_client_event)
from .input_buffer import BufferOutput, InputAudioBuffer


class RealtimeSession:
    """A session's settings and input buffer (see the module); ``id``: ``sess_…``."""

    def __init__(self, config: SessionConfig = SessionConfig(), device: str = "cpu",
                 max_append_chars: int = MAX_APPEND_CHARS, models: Optional[tuple[str, ...]] = None):
        self.id = out.new_id("sess")
        if config.turn_detection is not None and not vad_available():  # session.created says so
            config = replace(config, turn_detection=None)
        self.config = config
        self.device = device
        self.max_append_chars = max_append_chars  # base64 characters an append may carry (larger: an error)
        self.models = models  # the transcription models a session.update may name (None: any)
        self.buffer = InputAudioBuffer(config, device)

    def start(self) -> list[dict]:
        return [out.session_created(self.config)]

    def handle(self, message: Union[str, bytes, dict]) -> BufferOutput:
        try:
            event = parse_client_event(message, self.config, self.max_append_chars)
            if isinstance(event, SessionUpdate):
                return self._update(event.session)
            if isinstance(event, AudioAppend):
                return self.buffer.append(event.audio)
            if isinstance(event, AudioCommit):
                return self.buffer.commit(event.event_id)
            assert isinstance(event, AudioClear)
            return self.buffer.clear()
        except ProtocolError as problem:
            return BufferOutput([out.error(problem)])

    def _update(self, config: SessionConfig) -> BufferOutput:
        if self.models is not None and config.model is not None and config.model not in self.models:
            raise ProtocolError("model_not_found", f"the model {config.model!r} does not exist: this server "
                                f"serves {', '.join(self.models)}", "session.audio.input.transcription.model")
        if config.turn_detection is not None and not vad_available():
            raise ProtocolError("turn_detection_unavailable", "turn_detection server_vad needs the 'silero-vad' "
                                "package on the server (pip install silero-vad); without it set turn_detection "
                                "to null and commit the buffer", "session.audio.input.turn_detection")
        before, self.config = self.config, config
        if (config.sample_rate, config.turn_detection) != (before.sample_rate, before.turn_detection):
            self.buffer = InputAudioBuffer(config, self.device, offset=self.buffer.samples,
                                           last_item_id=self.buffer.last_item_id)
        return BufferOutput([out.session_updated(config)])


__all__ = ["RealtimeSession"]
