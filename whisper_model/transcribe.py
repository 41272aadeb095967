"""Long-form transcription: openai-whisper's ``transcribe()`` algorithm with faster-whisper's result shape.

    segments, info = transcribe(model, "talk.wav", beam_size=5)   # info is ready now; segments is a lazy generator
    for s in segments:
        print(f"[{s.start:.2f} -> {s.end:.2f}] {s.text}")
    results = transcribe_batch(model, ["a.wav", "b.mp3", samples], batch_size=8)   # [(segments, info)]

The audio's log-mel (30 s of silence appended) is cut into 30 s windows starting at ``seek``. Each window is
decoded with temperature fallback (a result is rejected when too repetitive, ``compression_ratio >
compression_ratio_threshold``, or too unlikely, ``avg_logprob < logprob_threshold``, unless the window looks
silent); a window judged silent (``no_speech_prob > no_speech_threshold`` and a low logprob) is skipped. Pairs
of timestamp tokens cut the text into segments; ``seek`` moves to the last complete timestamp (or the whole
window when the text ends with a single timestamp or has none). The text so far is the next window's prompt
(``condition_on_previous_text``), reset after a window decoded at temperature > 0.5.

All of it runs in ``scheduler.Scheduler``: ``transcribe`` is the scheduler over one audio, ``transcribe_batch`` /
``iter_transcribe_batch`` over many (their windows encoded and decoded together, ``batch_size`` at a time; at
temperature 0 each audio gets what ``transcribe`` gives it alone). Options: ``options=TranscriptionOptions(...)``
or the same names as keywords (``options.option_keywords``); both are checked before any audio is loaded.

Long files (``chunked``): ``chunking="vad"`` cuts each audio at speech pauses (Silero VAD) into chunks of at most
30 s that are decoded in parallel, ``batch_size`` chunks at a time (of one file or of many), each chunk without
the previous chunk's text; ``vad_filter=True`` removes non-speech before the sequential loop. ``vad_options``
(``io.vad.VadOptions``) tunes the detection.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Iterator, Optional, Sequence

import tqdm

from .chunked import make_scheduler
from .encoding import Audio
from .errors import WhisperError
from .io.tokenizer import Tokenizer
from .io.vad import VadOptions
from .longform import Segment, TranscriptionInfo
from .options import TranscriptionOptions, option_keywords
from .results import Results
from .scheduler import Event, Failed, Segments


@option_keywords
def transcribe(model, audio: Audio, *, options: Optional[TranscriptionOptions] = None,
               language: Optional[str] = None, initial_prompt: Optional[str] = None,
               tokenizer: Optional[Tokenizer] = None, progress: bool = False, chunking: str = "none",
               vad_filter: bool = False, vad_options: Optional[VadOptions] = None, batch_size: int = 8,
               ) -> tuple[Iterator[Segment], TranscriptionInfo]:
    """Transcribe (or translate) ``audio`` of any length: ``(lazy segment generator, info)``.

    ``model``: ``Whisper`` (or an accelerated wrapper); ``audio``: a path, file bytes, or 16 kHz mono samples [n];
    ``language``: a code or name, None to detect it on the first 30 s (multilingual models; English-only models
    use "en"); ``initial_prompt``: text before the first window; ``tokenizer`` supplies the vocabulary (default:
    the model's standard one). The audio is loaded (and its language detected) before this returns:
    ``OptionError`` names a bad option, ``AudioError`` says why the audio cannot be loaded.

    ``chunking="vad"``: the audio is cut at speech pauses into chunks of at most 30 s, decoded ``batch_size`` at a
    time, each without the previous chunk's text (``condition_on_previous_text=True`` is refused) and with
    ``initial_prompt`` as its prompt; the language is detected on the first chunk; segments come in time order as
    the chunks before them finish. ``vad_filter=True``: only the speech is transcribed, sequentially, with times on
    the audio's timeline. ``batch_size`` only matters with ``chunking="vad"`` (sequential decoding has one window
    at a time). See ``chunked``.
    """
    scheduler = make_scheduler(model, batch_size=batch_size, tokenizer=tokenizer, chunking=chunking,
                               vad_filter=vad_filter, vad_options=vad_options)
    scheduler.add(audio, options=options, language=language, initial_prompt=initial_prompt)
    events = scheduler.events()
    first = next(events)  # Started, or Failed
    if isinstance(first, Failed):
        raise first.error
    return _segments_of(events, first.info, progress), first.info


def _segments_of(events: Iterator[Event], info: TranscriptionInfo, progress: bool) -> Iterator[Segment]:
    """The segments of the one stream's events, as its windows are decoded."""
    with tqdm.tqdm(total=round(info.duration, 2), unit="s", disable=not progress) as bar:
        for event in events:
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, Segments):
                bar.update(event.done - bar.n)
                yield from event.segments


@dataclass(frozen=True)
class BatchItem:
    """One audio's outcome: ``index`` into the inputs, then its ``segments`` and ``info``, or the ``error`` that
    stopped it (``AudioError``: not loaded; ``segments`` empty and ``info`` None then)."""

    index: int
    segments: list[Segment] = field(default_factory=list)
    info: Optional[TranscriptionInfo] = None
    error: Optional[WhisperError] = None


@option_keywords
def iter_transcribe_batch(model, audios: Sequence[Audio], *, options: Optional[TranscriptionOptions] = None,
                          batch_size: int = 8, language: Optional[str] = None, initial_prompt: Optional[str] = None,
                          tokenizer: Optional[Tokenizer] = None, progress: bool = False, chunking: str = "none",
                          vad_filter: bool = False, vad_options: Optional[VadOptions] = None) -> Iterator[BatchItem]:
    """Transcribe ``audios`` (paths, file bytes, or 16 kHz mono samples [n]) ``batch_size`` at a time: one
    ``BatchItem`` per audio, yielded as each completes (in completion order). An audio that cannot be loaded
    gives a ``BatchItem`` with its ``error``; the others go on. ``language`` / ``initial_prompt``: every audio's
    (None: each audio's language detected). The options (``batch_size`` included) are checked now, before any
    audio is loaded: ``OptionError``. ``chunking="vad"``: every chunk of every audio is a stream (``batch_size``
    chunks at a time); ``vad_filter``: see ``transcribe``."""
    scheduler = make_scheduler(model, batch_size=batch_size, tokenizer=tokenizer, chunking=chunking,
                               vad_filter=vad_filter, vad_options=vad_options)
    audios = list(audios)
    for index, audio in enumerate(audios):
        scheduler.add(audio, options=options, language=language, initial_prompt=initial_prompt, stream_id=index)
    return _items(scheduler.events(), len(audios), progress)


def _items(events: Iterator[Event], n_audios: int, progress: bool) -> Iterator[BatchItem]:
    """The scheduler's events gathered per audio."""
    results = Results()
    with tqdm.tqdm(total=n_audios, unit="audio", disable=not progress) as bar:
        for event in events:
            done = results.add(event)
            if done is not None:
                bar.update(1)
                yield BatchItem(done.stream_id, error=done.error) if done.error is not None else \
                    BatchItem(done.stream_id, done.segments, done.info)


@option_keywords
def transcribe_batch(model, audios: Sequence[Audio], *, options: Optional[TranscriptionOptions] = None,
                     batch_size: int = 8, language: Optional[str] = None, initial_prompt: Optional[str] = None,
                     tokenizer: Optional[Tokenizer] = None, progress: bool = False, chunking: str = "none",
                     vad_filter: bool = False, vad_options: Optional[VadOptions] = None,
                     ) -> list[tuple[list[Segment], TranscriptionInfo]]:
    """``(segments, info)`` per audio, in input order; see ``iter_transcribe_batch``. An audio that fails raises
    its error (``AudioError`` naming it; use ``iter_transcribe_batch`` to go on without it)."""
    audios = list(audios)
    results: list = [None] * len(audios)
    for item in iter_transcribe_batch(model, audios, options=options, batch_size=batch_size, language=language,
                                      initial_prompt=initial_prompt, tokenizer=tokenizer, progress=progress,
                                      chunking=chunking, vad_filter=vad_filter, vad_options=vad_options):
        if item.error is not None:
            raise type(item.error)(f"audio {item.index} ({_describe(audios[item.index])}): {item.error}") \
                from item.error
        results[item.index] = (item.segments, item.info)
    return results


def _describe(audio: Audio) -> str:
    if isinstance(audio, (bytes, bytearray)):
        return f"{len(audio)} bytes"
    if hasattr(audio, "shape"):
        return f"samples of shape {tuple(audio.shape)}"
    return str(audio)


def result_dict(segments: Sequence[Segment], info: TranscriptionInfo) -> dict:
    """openai-whisper's result: {"text", "segments": [dicts], "language"}; ``segments`` may be the generator.
    A segment's dict has ``words`` (openai-whisper's {"word", "start", "end", "probability"} dicts) only when the
    segment has word timestamps (``Segment.words`` not None)."""
    segments = [segment_dict(s) for s in segments]
    return {"text": "".join(s["text"] for s in segments), "segments": segments, "language": info.language}


def segment_dict(segment: Segment) -> dict:
    """One segment of ``result_dict``."""
    out = asdict(replace(segment, words=None))
    del out["words"]
    if segment.words is not None:
        out["words"] = [{"word": w.word, "start": float(w.start), "end": float(w.end),
                         "probability": float(w.probability)} for w in segment.words]
    return out


__all__ = ["BatchItem", "Segment", "TranscriptionInfo", "TranscriptionOptions", "iter_transcribe_batch",
           "result_dict", "segment_dict", "transcribe", "transcribe_batch"]
