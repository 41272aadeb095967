"""Output writers: formats, timestamps, atomic writes."""
import json

import pytest
from parameterized import parameterized

from whisper_model.io.writers import FORMATS, atomic_write_text, format_timestamp, write_result

RESULT = {
    "text": " Hello there. Second --> line",
    "language": "en",
    "segments": [
        {"id": 0, "seek": 0, "start": 0.0, "end": 1.5, "text": " Hello there.", "tokens": [1, 2],
         "temperature": 0.0, "avg_logprob": -0.1, "compression_ratio": 1.0, "no_speech_prob": 0.01},
        {"id": 1, "seek": 0, "start": 3661.25, "end": 3662.0, "text": " Second --> line", "tokens": [3],
         "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.1, "no_speech_prob": 0.02},
    ],
}


@parameterized.expand([(0.0, False, ".", "00:00.000"), (1.2345, False, ".", "00:01.234"),
                       (3661.5, False, ".", "01:01:01.500"), (5.0, True, ",", "00:00:05,000")])
def test_format_timestamp(seconds, hours, marker, expected):
    assert format_timestamp(seconds, always_hours=hours, marker=marker) == expected


def test_format_timestamp_rejects_negative():
    with pytest.raises(ValueError, match="non-negative"):
        format_timestamp(-1.0)


def test_all_formats(tmp_path):
    paths = write_result(RESULT, "dir/clip.wav", tmp_path, "all")
    assert sorted(p.name for p in paths) == sorted(f"clip.{f}" for f in FORMATS)
    assert (tmp_path / "clip.txt").read_text() == "Hello there.\nSecond --> line\n"
    srt = (tmp_path / "clip.srt").read_text()
    assert "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n" in srt
    assert "2\n01:01:01,250 --> 01:01:02,000\nSecond -> line\n" in srt
    vtt = (tmp_path / "clip.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n00:00.000 --> 00:01.500\nHello there.\n")
    assert (tmp_path / "clip.tsv").read_text().splitlines()[1:] == ["0\t1500\tHello there.",
                                                                    "3661250\t3662000\tSecond --> line"]
    assert json.loads((tmp_path / "clip.json").read_text()) == RESULT


def test_unknown_format_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="output_format"):
        write_result(RESULT, "clip.wav", tmp_path, "docx")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    with pytest.raises(TypeError):
        atomic_write_text(target, 123)  # not a str: the write fails midway
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
