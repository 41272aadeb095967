"""What the server serves and how: the model (``ServedModel``) and the limits (``ServerConfig``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..io.tokenizer import Tokenizer
from ..options import TranscriptionOptions
from ..realtime.events import MAX_APPEND_CHARS

ALIASES = ("whisper-1",)  # model names OpenAI clients send; they mean the served model


@dataclass(frozen=True)
class ServedModel:
    """``model``: a ``Whisper`` (or the GPU engine, ``fast.engine.AcceleratedWhisper``); ``tokenizer``: its
    vocabulary; ``name``: its id in ``/v1/models`` and the ``model`` field (``ALIASES`` too); ``base_options``:
    the options a request starts from (openai-whisper's ``transcribe()`` defaults), its fields override them;
    ``max_beam_size``: the largest ``beam_size`` a request may ask for (its rows share the batch's memory)."""
    model: object
    tokenizer: Tokenizer
    name: str
    base_options: TranscriptionOptions = field(default_factory=TranscriptionOptions)
    max_beam_size: int = 16

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.name,) + tuple(a for a in ALIASES if a != self.name)


@dataclass(frozen=True)
class ServerConfig:
    """``batch_size``: rows of the one scheduler (windows decoded together); ``max_queue``: requests that may
    wait for a row (more get 503 with Retry-After); ``max_upload_bytes``: a larger body gets 413;
    ``request_timeout_s``: a request not done by then gets 504 and its rows are dropped; ``api_key``: when set,
    every route but /health and /metrics needs ``Authorization: Bearer <key>`` (401 otherwise);
    ``batch_wait_s``: before a round with free rows (the first after idling, or one after rows were freed), wait up
    to this long for requests to fill them, up to ``batch_gap_s`` (default a quarter of it) after each arrival
    (0: never wait; ``worker``, ``rounds``); ``retry_after_s``: the Retry-After of a 503;
    ``max_realtime_sessions``: ``/v1/realtime`` sessions open at once (the next is refused with an ``error``
    event); ``max_append_chars``: base64 characters one ``input_audio_buffer.append`` may carry (more: an
    ``error`` event, the session goes on); ``decode_processes``: processes that decode the uploads (0: threads
    of the server's process; ``uploads``: on a GPU, processes keep the decoding from slowing the batch's steps)."""
    batch_size: int = 16
    max_queue: int = 256
    max_upload_bytes: int = 25 * 1024 * 1024
    request_timeout_s: float = 600.0
    api_key: Optional[str] = None
    batch_wait_s: float = 0.0
    batch_gap_s: Optional[float] = None
    retry_after_s: int = 1
    shutdown_timeout_s: float = 30.0
    max_realtime_sessions: int = 64
    max_append_chars: int = MAX_APPEND_CHARS
    decode_processes: int = 0

    def __post_init__(self):
        positive = {"batch_size": self.batch_size, "max_upload_bytes": self.max_upload_bytes,
                    "max_realtime_sessions": self.max_realtime_sessions, "max_append_chars": self.max_append_chars,
                    "request_timeout_s": self.request_timeout_s, "retry_after_s": self.retry_after_s}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if min(self.max_queue, self.batch_wait_s, self.gap_s, self.shutdown_timeout_s, self.decode_processes) < 0:
            raise ValueError("max_queue, batch_wait_s, batch_gap_s, shutdown_timeout_s and decode_processes must "
                             "be >= 0")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty (None: no key)")

    @property
    def gap_s(self) -> float:
        return self.batch_wait_s / 4 if self.batch_gap_s is None else self.batch_gap_s

    @property
    def capacity(self) -> int:
        """Requests admitted at once: a row each, plus the queue."""
        return self.batch_size + self.max_queue
