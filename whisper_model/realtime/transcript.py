"""One item's transcript as server events: the scheduler's committed texts in, transcription events out.

    transcript = Transcript(item_id)
    send(transcript.committed(text))           # a live stream's Committed text -> [...transcription.delta] or []
    send(transcript.finish(seconds))           # its Finished -> [...transcription.completed]

A live stream's ``Committed`` texts are final (the scheduler's LocalAgreement never retracts them), so each becomes
one delta as it is; only the transcript's leading spaces are dropped (Whisper's text starts with one; OpenAI's
transcripts start with their first letter), and a text with nothing left sends no delta. The completed
transcript is every delta joined: a client that joins the deltas has the completed text.
"""
from __future__ import annotations

from . import server_events as out


class Transcript:
    """``text``: the deltas sent so far, joined; ``finished`` once ``finish`` was called."""

    def __init__(self, item_id: str):
        self.item_id = item_id
        self.text = ""
        self.finished = False

    def committed(self, text: str) -> list[dict]:
        """The delta event of newly final ``text`` (none when it adds nothing)."""
        self._open()
        delta = text if self.text else text.lstrip()
        if not delta:
            return []
        self.text += delta
        return [out.transcription_delta(self.item_id, delta)]

    def finish(self, seconds: float) -> list[dict]:
        """The completed event: the deltas joined; ``seconds``: the item's audio (its usage)."""
        self._open()
        self.finished = True
        return [out.transcription_completed(self.item_id, self.text, seconds)]

    def _open(self) -> None:
        if self.finished:
            raise RuntimeError(f"item {self.item_id}'s transcript is completed: nothing may follow")


__all__ = ["Transcript"]
