"""The multipart form of ``/v1/audio/transcriptions`` and ``/translations`` -> a checked ``AudioRequest``.

Fields (OpenAI's names): ``file`` (required), ``model`` (the served id or ``whisper-1``; default the served
model), ``language`` (a code or English name; default detected, or English on an English-only model),
``prompt``, ``temperature`` (0, the default: openai-whisper's fallback schedule 0, 0.2, ... 1.0; t > 0: t,
t + 0.2, ... up to 1, as openai-whisper's command line), ``response_format`` (json, text, srt, vtt,
verbose_json), ``timestamp_granularities[]`` (segment, word, or both; verbose_json only: word times the words),
``stream`` (true: server-sent events of segments), and ours, read as the command line reads its flags
(``service.flags``): ``beam_size`` (beam search at temperature 0), ``chunking`` (none, the default, or vad: the
speech cut at pauses into chunks of at most 30 s, decoded in parallel with the other requests' windows, each without
the previous chunk's text) and ``vad_filter`` (true: only the speech, decoded sequentially); both need the
``silero-vad`` package on the server. Any other field is refused, naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..chunk_plan import chunk_options
from ..chunked import check_chunking
from ..cli.args import temperatures
from ..errors import OptionError
from ..io.vad import vad_available
from ..service.flags import OPTIONS, TRUE_FALSE, form_value
from ..options import TranscriptionOptions, checked_tokenizer
from .config import ServedModel
from .errors import ApiError

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("timestamp_granularities[]", "timestamp_granularities")
GRANULARITY_VALUES = ("segment", "word")
SINGLE = ("file", "model", "language", "prompt", "response_format", "temperature", "stream", "beam_size", "chunking",
          "vad_filter")


@dataclass(frozen=True)
class AudioRequest:
    data: bytes  # the uploaded file
    filename: str
    options: TranscriptionOptions
    language: Optional[str]
    prompt: Optional[str]
    response_format: str
    stream: bool
    granularities: tuple[str, ...] = ("segment",)  # what verbose_json carries: its segments and / or words
    chunking: str = "none"  # the request's path (``chunked``)
    vad_filter: bool = False


async def read_form(request: Request, task: str, served: ServedModel) -> AudioRequest:
    """The request's form, checked (``ApiError`` 400 naming the field, 404 for an unknown model); the upload's
    temporary file is closed before this returns."""
    try:
        form = await request.form(max_files=1, max_fields=32)
    except HTTPException as e:  # a malformed multipart body (starlette's MultiPartException)
        raise ApiError(400, f"the body is not a valid multipart form: {e.detail}") from None
    try:
        fields = _fields(form)
        upload = fields.pop("file", None)
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "'file' is required: the audio, as a multipart/form-data file field",
                           param="file")
        data = await upload.read()
        filename = upload.filename or "audio"
    finally:
        await form.close()
    return checked(fields, data, filename, task, served)


def _fields(form: FormData) -> dict:
    """Each field's value (``GRANULARITIES``: the list of values); unknown or repeated fields are refused."""
    fields: dict = {"granularities": []}
    for name, value in form.multi_items():
        if name in GRANULARITIES:
            fields["granularities"].append(value)
        elif name not in SINGLE:
            raise ApiError(400, f"unknown field {name!r}; this server takes {', '.join(SINGLE)} and "
                           "timestamp_granularities[]", param=name)
        elif name in fields:
            raise ApiError(400, f"field {name!r} is given more than once", param=name)
        else:
            fields[name] = value
    for name, value in fields.items():
        if name not in ("file", "granularities") and not isinstance(value, str):
            raise ApiError(400, f"field {name!r} must be a text field, not a file", param=name)
    return fields


def checked(fields: dict, data: bytes, filename: str, task: str, served: ServedModel) -> AudioRequest:
    """The form's ``fields`` (text values; ``granularities``: a list) as an ``AudioRequest`` (``ApiError``)."""
    model = fields.get("model") or served.name
    if model not in served.ids:
        raise ApiError(404, f"the model {model!r} does not exist; this server serves {served.name!r} (also "
                       f"called {', '.join(repr(i) for i in served.ids[1:])})", param="model",
                       code="model_not_found")
    response_format = fields.get("response_format") or "json"
    if response_format not in FORMATS:
        raise ApiError(400, f"response_format must be one of {', '.join(FORMATS)}, got {response_format!r}",
                       param="response_format")
    granularities = _granularities(fields["granularities"], response_format)
    given = fields.get("language") or None
    try:  # the language (a code or a name) and the task, for this model; None: detected
        language = checked_tokenizer(served.model, given, task, served.tokenizer).language
    except OptionError as e:
        raise ApiError(400, str(e), param="language" if "language" in str(e) else "model") from None
    chunking, vad_filter = _path(fields)
    options = _options(fields, task, served.base_options, words="word" in granularities, chunking=chunking)
    if (options.beam_size or 0) > served.max_beam_size:
        raise ApiError(400, f"beam_size must be at most {served.max_beam_size} on this server, got "
                       f"{options.beam_size}", param="beam_size")
    return AudioRequest(data=data, filename=filename, options=options,
                        language=language if given is not None else None, prompt=fields.get("prompt") or None,
                        response_format=response_format, stream=_flag(fields, "stream"), granularities=granularities,
                        chunking=chunking, vad_filter=vad_filter)


def _path(fields: dict) -> tuple[str, bool]:
    """``chunking`` and ``vad_filter`` (the command line's defaults and checks); VAD needs silero-vad here."""
    chunking = _value(fields, "chunking")
    vad_filter = _value(fields, "vad_filter")
    try:
        check_chunking(chunking, vad_filter, None)
    except OptionError as e:
        raise ApiError(400, str(e), param="vad_filter" if vad_filter else "chunking") from None
    if (chunking == "vad" or vad_filter) and not vad_available():
        param = "chunking" if chunking == "vad" else "vad_filter"
        raise ApiError(400, f"{param} needs voice activity detection and this server has no 'silero-vad' package "
                       "(pip install silero-vad)", param=param)
    return chunking, vad_filter


def _value(fields: dict, name: str):
    """A field read as its flag is (``service.flags``); absent or empty: the flag's default."""
    if not fields.get(name):
        return OPTIONS[name].default
    try:
        return form_value(name, fields[name])
    except ValueError as e:
        raise ApiError(400, str(e), param=name) from None


def _granularities(given: list, response_format: str) -> tuple[str, ...]:
    """The checked ``timestamp_granularities[]`` (default: segment); as OpenAI, they need verbose_json."""
    param = "timestamp_granularities[]"
    for granularity in given:
        if granularity not in GRANULARITY_VALUES:
            raise ApiError(400, f"timestamp_granularities[] must be segment or word, got {granularity!r}",
                           param=param)
    if given and response_format != "verbose_json":
        raise ApiError(400, f"timestamp_granularities[] needs response_format verbose_json, got "
                       f"{response_format!r}", param=param)
    return tuple(g for g in GRANULARITY_VALUES if g in given) or ("segment",)


def _options(fields: dict, task: str, base: TranscriptionOptions, *, words: bool,
             chunking: str) -> TranscriptionOptions:
    changes: dict = {"task": task, "word_timestamps": words}
    if fields.get("temperature"):
        t = _number(fields, "temperature", float)
        if not 0.0 <= t <= 1.0:
            raise ApiError(400, f"temperature must be between 0 and 1, got {t}", param="temperature")
        if t > 0:  # 0: the base schedule (openai-whisper's fallback from 0)
            changes["temperature"] = temperatures(t, 0.2)
    if fields.get("beam_size"):
        changes["beam_size"] = _value(fields, "beam_size")
    try:
        options = replace(base, **changes)
    except OptionError as e:
        param = next((name for name in changes if name in str(e)), None)
        raise ApiError(400, str(e), param=param) from None
    try:
        return chunk_options(options) if chunking == "vad" else options
    except OptionError as e:  # the command line's refusal (condition_on_previous_text=True)
        raise ApiError(400, str(e), param="chunking") from None


def _number(fields: dict, name: str, kind: type):
    try:
        return kind(fields[name])
    except ValueError:
        raise ApiError(400, f"{name} must be {'an integer' if kind is int else 'a number'}, got "
                       f"{fields[name]!r}", param=name) from None


def _flag(fields: dict, name: str) -> bool:
    value = fields.get(name) or "false"
    if value.lower() not in TRUE_FALSE:
        raise ApiError(400, f"{name} must be true or false, got {value!r}", param=name)
    return TRUE_FALSE[value.lower()]


__all__ = ["AudioRequest", "FORMATS", "checked", "read_form"]
