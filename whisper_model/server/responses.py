"""A finished transcription as OpenAI's response formats, and the server-sent events of a streamed one.

    json          {"text", "usage": {"type": "duration", "seconds"}}
    verbose_json  {"task", "language" (its English name, as OpenAI), "duration", "text", "segments": [openai-whisper's
                  segment dicts: id, seek, start, end, text, tokens, temperature, avg_logprob, compression_ratio,
                  no_speech_prob] (granularity segment, the default), "words": [{"word", "start", "end"}]
                  (granularity word), "usage"}
    text          the text, one line
    srt, vtt      what the command line writes (``io.writers``), byte for byte

Streamed (``stream=true``), one ``data:`` line per event, then ``data: [DONE]``:
``{"type": "transcript.text.delta", "delta": <segment text>, "segment": {<segment dict>}}`` per segment as its
window is decoded, ``{"type": "transcript.text.done", "text", "language", "duration"}`` at the end, or
``{"type": "error", "error": {...}}`` (the OpenAI client raises it).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Sequence

from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..io.tokenizer import LANGUAGES
from ..io.writers import render
from ..longform import Segment, TranscriptionInfo
from ..transcribe import result_dict
from .errors import ApiError


def usage(info: TranscriptionInfo) -> dict:
    return {"type": "duration", "seconds": math.ceil(info.duration)}


def rendered(segments: Sequence[Segment], info: TranscriptionInfo, response_format: str,
             granularities: Sequence[str] = ("segment",)) -> Response:
    result = result_dict(segments, info)
    text = result["text"].strip()
    if response_format == "json":
        return JSONResponse({"text": text, "usage": usage(info)})
    if response_format == "verbose_json":
        body = {"task": info.options.task, "language": LANGUAGES.get(info.language, info.language),
                "duration": info.duration, "text": text}
        if "segment" in granularities:
            body["segments"] = [{k: v for k, v in s.items() if k != "words"} for s in result["segments"]]
        if "word" in granularities:
            body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end}
                             for s in segments for w in s.words or ()]
        return JSONResponse({**body, "usage": usage(info)})
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    return PlainTextResponse(render(result, response_format))  # what the command line writes


def sse_delta(segment: Segment) -> str:
    return json.dumps({"type": "transcript.text.delta", "delta": segment.text, "segment": asdict(segment)},
                      ensure_ascii=False)


def sse_done(segments: Sequence[Segment], info: TranscriptionInfo) -> str:
    text = "".join(s.text for s in segments).strip()
    return json.dumps({"type": "transcript.text.done", "text": text, "language": info.language,
                       "duration": info.duration}, ensure_ascii=False)


def sse_error(error: ApiError) -> str:
    return json.dumps({"type": "error", **error.body()}, ensure_ascii=False)


__all__ = ["rendered", "sse_delta", "sse_done", "sse_error", "usage"]
