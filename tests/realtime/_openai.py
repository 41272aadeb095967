"""Server events checked against the ``openai`` package's realtime models."""
from __future__ import annotations

import pydantic


def validated(model, data: dict):
    """``model.model_validate(data)``, and no key of ``data`` anywhere that the model does not declare (openai's
    models allow extras, which would hide a misspelled field)."""
    parsed = model.model_validate(data)
    stack = [parsed]
    while stack:
        node = stack.pop()
        assert not node.model_extra, f"{type(node).__name__}: undeclared fields {node.model_extra}"
        for name in type(node).model_fields:
            value = getattr(node, name)
            stack += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, pydantic.BaseModel)]
    return parsed


def validated_event(data: dict):
    """A server event validated with the openai model its ``type`` names."""
    from openai.types.realtime import (ConversationItemInputAudioTranscriptionCompletedEvent,
                                       ConversationItemInputAudioTranscriptionDeltaEvent,
                                       ConversationItemInputAudioTranscriptionFailedEvent,
                                       InputAudioBufferClearedEvent, InputAudioBufferCommittedEvent,
                                       InputAudioBufferSpeechStartedEvent, InputAudioBufferSpeechStoppedEvent,
                                       RealtimeErrorEvent, SessionCreatedEvent, SessionUpdatedEvent)
    models = {m.model_fields["type"].annotation.__args__[0]: m for m in (
        ConversationItemInputAudioTranscriptionCompletedEvent, ConversationItemInputAudioTranscriptionDeltaEvent,
        ConversationItemInputAudioTranscriptionFailedEvent, InputAudioBufferClearedEvent,
        InputAudioBufferCommittedEvent, InputAudioBufferSpeechStartedEvent, InputAudioBufferSpeechStoppedEvent,
        RealtimeErrorEvent, SessionCreatedEvent, SessionUpdatedEvent)}
    return validated(models[data["type"]], data)
