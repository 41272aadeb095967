"""One utterance's transcript as server events: hypotheses in, ``delta`` events of the final words out.

    transcript = Transcript(utterance.item_id)
    send(transcript.update(hypothesis))        # [conversation.item.input_audio_transcription.delta] or []
    send(transcript.finish(text, seconds))     # [the last delta,] conversation.item.input_audio_transcription.completed

The words are made final by ``LocalAgreement`` (two hypotheses in a row agree); the completed transcript is every
delta joined, so a client that joins the deltas has the completed text.
"""
from __future__ import annotations

from typing import Optional

from . import server_events as out
from .agreement import Hypothesis, LocalAgreement


class Transcript:
    def __init__(self, item_id: str):
        self.item_id = item_id
        self.agreement = LocalAgreement()

    def update(self, hypothesis: Hypothesis) -> list[dict]:
        delta = self.agreement.update(hypothesis)
        return [out.transcription_delta(self.item_id, delta)] if delta else []

    def finish(self, final: Optional[Hypothesis], seconds: float) -> list[dict]:
        """``final``: the utterance's whole transcript (None: the last hypothesis); ``seconds``: its audio's."""
        delta = self.agreement.finish(final)
        events = [out.transcription_delta(self.item_id, delta)] if delta else []
        return events + [out.transcription_completed(self.item_id, self.agreement.text, seconds)]


__all__ = ["Transcript"]
