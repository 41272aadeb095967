"""Uploads decoded in processes (``server.uploads``): the same samples as in the server's own process, a file
that is not audio named in a 400, a decoding process that dies answered with a 500 and replaced."""
from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest

from whisper_model.io.audio import load_audio
from whisper_model.server.errors import ApiError
from whisper_model.server.main import build_parser, decode_processes
from whisper_model.server.uploads import UploadDecoder

from ._server import SAMPLE, wav_bytes


@pytest.fixture(scope="module")
def uploads():
    decoder = UploadDecoder(processes=2)
    decoder.start()
    yield decoder
    decoder.close()


def decode(decoder: UploadDecoder, data: bytes, name: str = "clip"):
    return asyncio.run(decoder.decode(data, name))


def test_processes_give_the_samples_of_the_server_process(uploads):
    mp3 = SAMPLE.read_bytes()
    wav24k = wav_bytes(np.sin(np.arange(24000 * 3) / 7).astype(np.float32) * 0.3, rate=24000)
    for data in (mp3, wav24k):
        got, want = decode(uploads, data), load_audio(data)
        assert got.dtype == np.float32 and np.array_equal(got, want)
    assert np.array_equal(decode(UploadDecoder(processes=0), mp3), load_audio(mp3))  # threads: not started


def test_a_file_that_is_not_audio_is_a_400_naming_it(uploads):
    with pytest.raises(ApiError) as e:
        decode(uploads, b"not audio at all" * 64, "notes.wav")
    assert e.value.status == 400 and e.value.param == "file" and "'notes.wav'" in str(e.value)


def test_a_decoding_process_that_dies_is_a_500_and_is_replaced():
    decoder = UploadDecoder(processes=1)
    decoder.start()
    try:
        os.kill(next(iter(decoder._pool._processes)), signal.SIGKILL)
        with pytest.raises(ApiError) as e:
            decode(decoder, SAMPLE.read_bytes(), "jfk.mp3")
        assert e.value.status == 500 and "'jfk.mp3'" in str(e.value)
        assert np.array_equal(decode(decoder, SAMPLE.read_bytes()), load_audio(SAMPLE.read_bytes()))
    finally:
        decoder.close()


def test_the_default_number_of_processes_follows_the_device():
    parse = build_parser().parse_args
    assert decode_processes(parse(["--device", "cpu"])) == 0
    assert decode_processes(parse(["--device", "cpu", "--decode_processes", "3"])) == 3
    assert decode_processes(parse(["--engine_dir", "somewhere"])) == min(4, (os.cpu_count() or 1) // 2)
    with pytest.raises(ValueError, match="decode_processes"):
        UploadDecoder(processes=-1)
