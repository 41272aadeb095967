"""Bad uploads and options get the right status, the field at fault and a message that says what is wrong, in
OpenAI's error shape; the server goes on serving after each."""
from __future__ import annotations

import httpx
import pytest

from ._server import SAMPLE

JFK = SAMPLE.read_bytes()
WAV_HEADER_ONLY = (b"RIFF" + (1000036).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
                   + bytes.fromhex("01000100803e0000007d000002001000") + b"data" + (1000000).to_bytes(4, "little"))

CASES = [  # (id, form fields, file part or None, status, param, words of the message)
    ("no file", {"model": "tiny.en"}, None, 400, "file", "'file' is required"),
    ("file as text", {"file": "jfk.mp3"}, None, 400, "file", "'file' is required"),
    ("empty file", {}, ("a.wav", b""), 400, "file", "cannot be decoded as audio"),
    ("not audio", {}, ("notes.txt", b"hello, this is not audio at all" * 50), 400, "file", "not a media file"),
    ("truncated wav", {}, ("cut.wav", WAV_HEADER_ONLY + bytes(2000)), 400, "file", "cannot be decoded"),
    ("corrupt mp3", {}, ("bad.mp3", JFK[:400] + bytes(range(256)) * 64), 400, "file", "cannot be decoded"),
    ("unknown model", {"model": "whisper-large-v9"}, "jfk", 404, "model", "does not exist"),
    ("unknown field", {"best_of": "3"}, "jfk", 400, "best_of", "unknown field 'best_of'"),
    ("repeated field", [("language", "en"), ("language", "en")], "jfk", 400, "language", "more than once"),
    ("response_format", {"response_format": "docx"}, "jfk", 400, "response_format", "must be one of json"),
    ("temperature text", {"temperature": "warm"}, "jfk", 400, "temperature", "must be a number"),
    ("temperature range", {"temperature": "1.5"}, "jfk", 400, "temperature", "between 0 and 1"),
    ("beam_size text", {"beam_size": "five"}, "jfk", 400, "beam_size", "must be an integer"),
    ("beam_size zero", {"beam_size": "0"}, "jfk", 400, "beam_size", "beam_size"),
    ("beam_size too large", {"beam_size": "6"}, "jfk", 400, "beam_size", "at most 5"),  # --max_beam_width
    ("language unknown", {"language": "klingon"}, "jfk", 400, "language", "unsupported language 'klingon'"),
    ("language on english-only", {"language": "fr"}, "jfk", 400, "language", "English-only"),
    ("granularity without verbose_json", [("timestamp_granularities[]", "segment"), ("timestamp_granularities[]",
     "word")], "jfk", 400, "timestamp_granularities[]", "needs response_format verbose_json, got 'json'"),
    ("granularity unknown", {"timestamp_granularities[]": "sentence", "response_format": "verbose_json"}, "jfk",
     400, "timestamp_granularities[]", "must be segment or word, got 'sentence'"),
    ("stream flag", {"stream": "maybe"}, "jfk", 400, "stream", "true or false"),
    ("chunking unknown", {"chunking": "sliding"}, "jfk", 400, "chunking", "chunking must be one of none, vad"),
    ("vad_filter flag", {"vad_filter": "maybe"}, "jfk", 400, "vad_filter", "expected True or False, got 'maybe'"),
    ("chunking with vad_filter", {"chunking": "vad", "vad_filter": "true"}, "jfk", 400, "vad_filter",
     "give one of them"),
]


@pytest.mark.parametrize("fields, file, status, param, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_request_is_refused_naming_the_problem(server, fields, file, status, param, words):
    files = {"file": ("jfk.mp3", JFK)} if file == "jfk" else {"file": file} if file else None
    data = fields if isinstance(fields, dict) else None
    if not isinstance(fields, dict):  # repeated fields: encode them by hand, as curl -F does
        files = [(k, (None, v)) for k, v in fields] + list((files or {}).items())
    response = httpx.post(server.url + "/v1/audio/transcriptions", data=data, files=files, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"]
    assert error["type"] == "invalid_request_error"


def test_refused_uploads_too_large_with_and_without_a_content_length(server):
    big = bytes(5 * 2**20)  # the limit is 4 MiB
    with_length = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": ("big.wav", big)})
    assert with_length.status_code == 413 and with_length.json()["error"]["code"] == "file_too_large"

    def chunks():  # no Content-Length: the limit is found while the body comes in
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n"
        for _ in range(5):
            yield bytes(2**20)
        yield b"\r\n--b--\r\n"

    chunked = httpx.post(server.url + "/v1/audio/transcriptions", content=chunks(),
                         headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert chunked.status_code == 413 and "larger than this server's limit" in chunked.json()["error"]["message"]
    not_multipart = httpx.post(server.url + "/v1/audio/transcriptions", json={"file": "x"})
    assert not_multipart.status_code == 400 and not_multipart.json()["error"]["param"] == "file"


def test_the_server_goes_on_after_the_failures(server):
    response = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": ("jfk.mp3", JFK)},
                          data={"response_format": "text", "language": "english", "temperature": "0"}, timeout=120)
    assert response.status_code == 200 and "ask not what your country" in response.text.lower()
    assert server.metric('whisper_requests_total{endpoint="transcriptions",status="400"}') >= len(CASES) - 1
    assert server.health()["in_flight"] == 0


def test_max_beam_width_is_the_largest_beam_size_a_request_may_ask_for():
    """``--max_beam_width`` sizes the fast path's rows; a request's beam_size beyond it is refused (400)."""
    from whisper_model.server import main
    from whisper_model.server.errors import ApiError
    from whisper_model.server.forms import checked

    served = main.load(main.build_parser().parse_args(["--max_beam_width", "2", "--device", "cpu"]))
    assert served.max_beam_size == 2
    fields = {"granularities": [], "beam_size": "2"}
    assert checked(fields, JFK, "jfk.mp3", "transcribe", served).options.beam_size == 2
    with pytest.raises(ApiError, match="beam_size must be at most 2 on this server, got 3") as e:
        checked({**fields, "beam_size": "3"}, JFK, "jfk.mp3", "transcribe", served)
    assert e.value.status == 400
