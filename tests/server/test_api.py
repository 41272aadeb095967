"""The server's API with real clients (httpx multipart as curl sends it, and the official ``openai`` package)
against ``python -m whisper_model.serve --model tiny.en`` on the CPU: every response format equals the command
line's output for the same clip and options; 16 concurrent requests of different clips each get what the model
gives that clip offline (greedy and beam search, batched together); the routes besides; the temporary folder."""
from __future__ import annotations

import importlib.util
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import httpx
import numpy as np
import openai
import pytest

from whisper_model import WhisperModel
from whisper_model.cli import run
from whisper_model.io.audio import load_audio

from ._server import SAMPLE, clip, wav_bytes

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
EXACT = ("id", "seek", "start", "end", "text", "tokens", "temperature")
SHORT = ["en_arctic_a0007.wav", "en_bobby.wav", "en_f5_ref.wav", "en_jfk.mp3", "en_jfk.wav", "en_librivox_0870.wav",
         "en_librivox_0880.wav", "en_librivox_0890.wav", "en_librivox_0920.wav", "en_librivox_0930.wav"]


def post(server, data=None, files=None, path="/v1/audio/transcriptions", **kw) -> httpx.Response:
    return httpx.post(server.url + path, data=data or {}, files=files, timeout=300, **kw)


def sample_file():
    return {"file": ("jfk.mp3", SAMPLE.read_bytes(), "audio/mpeg")}


@pytest.fixture(scope="module")
def cli_outputs(tmp_path_factory):
    """The command line's outputs for the sample, greedy (the API's default decoding): {format: text}."""
    out = tmp_path_factory.mktemp("cli")
    code = run.main([str(SAMPLE), "--model", "tiny.en", "--device", "cpu", "--beam_size", "None", "-o", str(out),
                     "-f", "all", "--verbose", "None"])
    assert code == 0
    return {fmt: (out / f"jfk.{fmt}").read_text(encoding="utf-8") for fmt in ("json", "txt", "srt", "vtt")}


def assert_segments_equal(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert {k: g[k] for k in EXACT} == {k: w[k] for k in EXACT}
        for k in ("avg_logprob", "compression_ratio", "no_speech_prob"):
            assert g[k] == pytest.approx(w[k], rel=1e-4, abs=1e-6)  # batched rows: equal to rounding


def test_every_response_format_equals_the_command_line(server, cli_outputs):
    with ThreadPoolExecutor(len(FORMATS)) as pool:  # decoded together, as rows of one batch
        responses = dict(zip(FORMATS, pool.map(
            lambda fmt: post(server, {"model": "tiny.en", "response_format": fmt}, sample_file()), FORMATS)))
    assert all(r.status_code == 200 for r in responses.values()), {f: r.text for f, r in responses.items()}
    cli = json.loads(cli_outputs["json"])
    assert responses["json"].json() == {"text": cli["text"].strip(), "usage": {"type": "duration", "seconds": 11}}
    verbose = responses["verbose_json"].json()
    assert (verbose["task"], verbose["language"], verbose["duration"]) == ("transcribe", "english", 11.0)
    assert verbose["text"] == cli["text"].strip()
    assert_segments_equal(verbose["segments"], cli["segments"])
    assert responses["text"].text == cli["text"].strip() + "\n"
    assert responses["srt"].text == cli_outputs["srt"] and responses["vtt"].text == cli_outputs["vtt"]
    assert responses["srt"].headers["content-type"].startswith("text/plain")
    assert "ask not what your country can do for you" in cli["text"].lower()


def test_word_granularity_gives_the_words_the_model_gives(server):
    """verbose_json with ``timestamp_granularities[]`` word (and segment): the words and times the model gives the
    clip in this process (same weights, fp32 CPU), as OpenAI's shape ({word, start, end}, no leading space)."""
    segments, _ = WhisperModel("tiny.en", device="cpu").transcribe(load_audio(SAMPLE), word_timestamps=True,
                                                                    beam_size=None)
    segments = list(segments)
    want = [{"word": w.word.strip(), "start": w.start, "end": w.end} for s in segments for w in s.words]
    both = post(server, {"response_format": "verbose_json", "timestamp_granularities[]": ["word", "segment"]},
                sample_file())
    only = post(server, {"response_format": "verbose_json", "timestamp_granularities[]": ["word"]}, sample_file())
    assert both.status_code == only.status_code == 200, (both.text, only.text)
    assert len(want) >= 20 and both.json()["words"] == only.json()["words"] == want
    assert [s["text"] for s in both.json()["segments"]] == [s.text for s in segments]
    assert "words" not in both.json()["segments"][0] and "segments" not in only.json()
    plain = post(server, {"response_format": "verbose_json"}, sample_file()).json()
    assert "words" not in plain and [s["text"] for s in plain["segments"]] == [s.text for s in segments]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # openai 3.x marks audio.translations deprecated
def test_the_openai_client(server, cli_outputs):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    cli = json.loads(cli_outputs["json"])

    def create(fmt):
        extra = {"timestamp_granularities": ["segment"]} if fmt == "verbose_json" else {}
        with open(SAMPLE, "rb") as f:
            return client.audio.transcriptions.create(model="whisper-1", file=f, response_format=fmt, **extra)

    with ThreadPoolExecutor(len(FORMATS)) as pool:
        got = dict(zip(FORMATS, pool.map(create, FORMATS)))
    assert got["json"].text == cli["text"].strip()
    assert got["verbose_json"].language == "english" and got["verbose_json"].duration == 11.0
    assert_segments_equal([s.model_dump() for s in got["verbose_json"].segments], cli["segments"])
    assert got["text"].strip() == cli["text"].strip()
    assert got["srt"] == cli_outputs["srt"] and got["vtt"] == cli_outputs["vtt"]
    with open(SAMPLE, "rb") as f:
        events = list(client.audio.transcriptions.create(model="tiny.en", file=f, stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [e.type for e in events] == ["transcript.text.delta"] * len(deltas) + ["transcript.text.done"]
    assert "".join(d.delta for d in deltas).strip() == events[-1].text == cli["text"].strip()
    assert [d.segment["text"] for d in deltas] == [s["text"] for s in cli["segments"]]
    with open(SAMPLE, "rb") as f, pytest.raises(openai.BadRequestError) as bad:
        client.audio.translations.create(model="whisper-1", file=f)  # tiny.en is English-only
    assert "multilingual" in bad.value.message
    with open(SAMPLE, "rb") as f, pytest.raises(openai.NotFoundError) as missing:
        client.audio.transcriptions.create(model="gpt-4o-transcribe", file=f)
    assert missing.value.body["param"] == "model" and missing.value.body["code"] == "model_not_found"
    assert [m.id for m in client.models.list()] == ["tiny.en", "whisper-1"]


@pytest.mark.parametrize("field", [{"chunking": "vad"}, {"vad_filter": True}], ids=["chunking", "vad_filter"])
def test_the_openai_client_asks_for_a_vad_path(server, field):
    """``chunking`` / ``vad_filter`` as extra form fields: the text the model gives the clip on that path, or, on a
    server without the silero-vad package, a 400 naming the field and the package."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with open(SAMPLE, "rb") as f:
        if importlib.util.find_spec("silero_vad") is None:
            with pytest.raises(openai.BadRequestError) as bad:
                client.audio.transcriptions.create(model="whisper-1", file=f, extra_body=field)
            assert bad.value.body["param"] == next(iter(field)) and "silero-vad" in bad.value.message
            return
        got = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                 extra_body=field)
    segments, info = WhisperModel("tiny.en", device="cpu").transcribe(load_audio(SAMPLE), beam_size=None, **field)
    assert [s.text for s in got.segments] == [s.text for s in segments]


def sixteen_inputs() -> list[tuple[str, bytes]]:
    """Ten short shared clips (the files as they are) and six 8 s pieces of two long ones (as WAV)."""
    inputs = [(name, clip(name).read_bytes()) for name in SHORT]
    for name in ("en_lecture_60s.wav", "en_asterisk_demo_instruct_8k.wav"):
        samples = load_audio(clip(name))
        inputs += [(f"{name}[{k * 8}:{k * 8 + 8}]", wav_bytes(samples[k * 128000: (k + 1) * 128000]))
                   for k in range(3)]
    return inputs


def test_sixteen_concurrent_requests_of_different_clips_are_each_right(server):
    """Continuous batching: 16 requests into 8 rows, two of them with beam search; each gets the segments the
    model gives its clip offline (fp32, temperature 0: batching changes nothing)."""
    inputs = sixteen_inputs()
    beam = {1, 6}  # these two ask for beam_size=2

    def request(i):
        name, data = inputs[i]
        fields = {"response_format": "verbose_json", **({"beam_size": "2"} if i in beam else {})}
        return post(server, fields, {"file": (name, data)})

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(request, range(16)))
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses if r.status_code != 200]
    model = WhisperModel("tiny.en", device="cpu")
    greedy = [i for i in range(16) if i not in beam]
    want = dict(zip(greedy, model.transcribe_batch([inputs[i][1] for i in greedy], batch_size=8)))
    want.update(zip(sorted(beam), model.transcribe_batch([inputs[i][1] for i in sorted(beam)], beam_size=2)))
    for i, response in enumerate(responses):
        segments, info = want[i]
        assert segments and all(s.temperature == 0.0 for s in segments), inputs[i][0]  # no sampled fallback
        assert_segments_equal(response.json()["segments"], [asdict(s) for s in segments])
        assert response.json()["duration"] == info.duration
    assert server.metric("whisper_batch_occupancy_count") >= 16
    assert server.health()["in_flight"] == 0


def test_models_health_metrics_and_unknown_routes(server):
    assert httpx.get(server.url + "/v1/models/whisper-1").json()["id"] == "whisper-1"
    missing = httpx.get(server.url + "/v1/models/large-v9")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"
    health = server.health()
    assert health["status"] == "ok" and health["model"] == "tiny.en" and health["batch_size"] == 8
    text = httpx.get(server.url + "/metrics").text
    for name in ("whisper_requests_total", "whisper_request_seconds", "whisper_queue_depth", "whisper_batch_rows",
                 "whisper_batch_occupancy", "whisper_in_flight", "whisper_rejected_total", "whisper_cancelled_total"):
        assert name in text
    nowhere = httpx.get(server.url + "/v1/audio/speech")
    assert nowhere.status_code == 404 and "no route" in nowhere.json()["error"]["message"]
    wrong = httpx.get(server.url + "/v1/audio/transcriptions")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


def test_a_large_upload_spools_to_disk_and_no_temporary_file_outlives_a_request(server):
    """Starlette spools uploads over 1 MiB to a file in TMPDIR; srt / vtt are rendered in a temporary folder;
    after good, bad and refused requests nothing new is there (the server's own: the socket folder of the upload
    decoding processes' forkserver)."""
    before = sorted(p.name for p in server.tmp.iterdir())
    silence = wav_bytes(np.zeros(35 * 16000, np.float32))  # 1.1 MB: past the spool's memory part
    assert len(silence) > 2**20
    good = post(server, {"response_format": "srt"}, {"file": ("silence.wav", silence)})
    assert good.status_code == 200
    noise = np.random.default_rng(0).bytes(3 * 2**20)
    bad = post(server, {}, {"file": ("noise.wav", noise)})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "file"
    too_large = post(server, {}, {"file": ("big.wav", noise + noise)})
    assert too_large.status_code == 413
    assert post(server, {"response_format": "vtt"}, sample_file()).status_code == 200
    assert sorted(p.name for p in server.tmp.iterdir()) == before
