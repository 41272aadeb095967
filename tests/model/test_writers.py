"""Output writers: formats, timestamps, atomic writes; srt and vtt byte for byte openai-whisper's (its writers are
the reference) with word timestamps and every writer option; ``result_dict``'s words."""
import dataclasses
import json
import random

import pytest
from parameterized import parameterized

from whisper_model.decode.timing import Word
from whisper_model.errors import OptionError
from whisper_model.io.writers import FORMATS, WriterOptions, atomic_write_text, format_timestamp, render, write_result
from whisper_model.longform import Segment, TranscriptionInfo
from whisper_model.options import TranscriptionOptions
from whisper_model.transcribe import result_dict

from _requires import openai_whisper

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


# ---------------------------------------------------------------------------------------------------------------
# srt / vtt with word timestamps, against openai-whisper's writers (the reference) for the same result and options
def segment(i, words, text=None, start=None, end=None):
    """A segment dict with ``words`` ([(word, start, end)]; None: no "words" key)."""
    d = {"id": i, "seek": 0, "start": start if start is not None else (words[0][1] if words else 0.0),
         "end": end if end is not None else (words[-1][2] if words else 0.0),
         "text": text if text is not None else "".join(w for w, _, _ in words or []), "tokens": [1, 2],
         "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.2, "no_speech_prob": 0.05}
    if words is not None:
        d["words"] = [{"word": w, "start": s, "end": e, "probability": 0.9} for w, s, e in words]
    return d


def result_of(*segments):
    return {"text": "".join(s["text"] for s in segments), "segments": list(segments), "language": "en"}


SENTENCE = [(" Hello,", 0.0, 0.4), (" world.", 0.5, 0.9), (" This", 1.2, 1.4), (" is", 1.4, 1.5),
            (" a", 1.5, 1.6), (" rather", 1.6, 2.0), (" long", 2.0, 2.3), (" sentence", 2.3, 2.9), (" that", 3.0, 3.2),
            (" goes", 3.2, 3.5), (" on.", 3.5, 4.0)]
WORDS = result_of(
    segment(0, SENTENCE),
    segment(1, [(' "Quoted"', 4.2, 4.8), (" -->", 4.8, 5.0), (" (aside)", 5.0, 5.5), (" well-known!", 5.5, 6.2)]),
    segment(2, [], text=""),  # cleared: no words (openai-whisper gives it "words": [])
    segment(3, [(" After", 10.0, 10.4), (" a", 10.4, 10.5), (" pause,", 10.5, 11.0), (" supercalifragilistic", 11.0,
                12.5), (" word.", 12.5, 13.0)]),
    segment(4, [(" Pauses", 15.0, 15.5), (" of", 18.0, 18.2), (" three", 20.5, 20.8), (" seconds.", 23.6, 24.0)]),
    segment(5, [(" Hour", 3599.5, 3599.9), (" boundary", 3599.9, 3600.4), (" crossed.", 3600.4, 3601.25)]),
    segment(6, [("中文", 3602.0, 3602.5), ("。", 3602.5, 3602.5)]),  # no spaces, zero-length word
)
NO_WORDS = result_of(segment(0, None, text=" Hello --> there.", start=0.0, end=1.5),
                     segment(1, None, text=" Second line", start=3661.25, end=3662.0))
FIRST_EMPTY = result_of(segment(0, [], text="", start=0.0, end=0.0), segment(1, SENTENCE[:4]))
EMPTY = result_of()

OPTIONS = {
    "none": {},
    "highlight": dict(highlight_words=True),
    "narrow": dict(max_line_width=10),
    "wide": dict(max_line_width=42),
    "one_char": dict(max_line_width=1),
    "narrow_two_lines": dict(max_line_width=16, max_line_count=2),
    "wide_one_line": dict(max_line_width=42, max_line_count=1),
    "count_only": dict(max_line_count=2),
    "words_per_line": dict(max_words_per_line=3),
    "one_word": dict(max_words_per_line=1),
    "words_and_width": dict(max_words_per_line=2, max_line_width=20),
    "words_width_count": dict(max_words_per_line=2, max_line_width=20, max_line_count=2),
    "highlight_narrow_two_lines": dict(highlight_words=True, max_line_width=16, max_line_count=2),
    "highlight_words_per_line": dict(highlight_words=True, max_words_per_line=2),
}
RESULTS = {"words": WORDS, "no_words": NO_WORDS, "first_empty": FIRST_EMPTY, "empty": EMPTY}


def openai_text(fmt, result, options, folder):
    from whisper.utils import get_writer

    get_writer(fmt, str(folder))(result, "clip.wav", dict(options))
    return (folder / f"clip.{fmt}").read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
@pytest.mark.parametrize("result_name", list(RESULTS))
@pytest.mark.parametrize("options_name", list(OPTIONS))
def test_subtitles_are_byte_identical_to_openai_whisper(tmp_path, fmt, result_name, options_name):
    openai_whisper()
    result, options = RESULTS[result_name], OPTIONS[options_name]
    assert render(result, fmt, WriterOptions(**options)) == openai_text(fmt, result, options, tmp_path)


def test_subtitles_match_openai_whisper_on_random_words(tmp_path):
    """Random words (spaces, line breaks and arrows in them, pauses, zero-length words) and options."""
    openai_whisper()
    rng = random.Random(1)
    vocab = [" hello", " world,", "foo", " a", " extraordinarily", " -->", ' "x"', "  two", " x\n", "\n", " ",
             " a\nb", "。", " é", "\t(tab)"]
    for _ in range(150):
        t, segments = rng.choice([0.0, 3598.0]), []
        for i in range(rng.randint(1, 5)):
            words = []
            for _ in range(rng.choice([0, 1, 3, 8, 14])):
                t += rng.choice([0.0, 0.0004, 0.1, 2.5, 3.0, 3.5])
                words.append((rng.choice(vocab), round(t, 3), round(t + rng.choice([0.0, 0.3]), 3)))
                t = words[-1][2]
            segments.append(segment(i, words, start=t))
        options = dict(highlight_words=rng.random() < 0.5, max_line_width=rng.choice([None, 1, 8, 20, 42]),
                       max_line_count=rng.choice([None, 1, 2, 3]), max_words_per_line=rng.choice([None, 1, 2, 5]))
        result = result_of(*segments)
        for fmt in ("srt", "vtt"):
            assert render(result, fmt, WriterOptions(**options)) == openai_text(fmt, result, options, tmp_path), \
                (fmt, options, result)


def test_word_cues_by_hand():
    """What the options do, spelled out (the reference tests above say it is openai-whisper's)."""
    result = result_of(segment(0, SENTENCE[:4]), segment(1, [(" Bye.", 61.0, 61.5)]))
    assert render(result, "vtt") == ("WEBVTT\n\n00:00.000 --> 00:01.500\nHello, world. This is\n\n"
                                     "01:01.000 --> 01:01.500\nBye.\n\n")
    assert render(result, "srt", WriterOptions(max_line_width=14, max_line_count=2)) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello, world.\nThis is\n\n"
        "2\n00:01:01,000 --> 00:01:01,500\nBye.\n\n")  # a pause of more than 3 s starts a new subtitle
    highlighted = render(result_of(segment(0, [(" a", 0.0, 0.5), (" b", 1.0, 1.5)])), "vtt",
                         WriterOptions(highlight_words=True))
    assert highlighted == ("WEBVTT\n\n00:00.000 --> 00:00.500\n<u>a</u> b\n\n00:00.500 --> 00:01.000\na b\n\n"
                           "00:01.000 --> 00:01.500\na <u>b</u>\n\n")


def test_words_are_written_as_given_and_segments_as_before():
    assert "-->" in render(WORDS, "srt").split("\n\n")[1]  # a word's arrow is kept, as openai-whisper does
    assert render(NO_WORDS, "srt") == ("1\n00:00:00,000 --> 00:00:01,500\nHello -> there.\n\n"
                                       "2\n01:01:01,250 --> 01:01:02,000\nSecond line\n\n")
    assert render(NO_WORDS, "vtt") == ("WEBVTT\n\n00:00.000 --> 00:01.500\nHello -> there.\n\n"
                                       "01:01:01.250 --> 01:01:02.000\nSecond line\n\n")
    for fmt in FORMATS:  # writer options change srt and vtt only when there are words
        assert render(NO_WORDS, fmt, WriterOptions(max_line_width=5, highlight_words=True)) == render(NO_WORDS, fmt)
        assert render(WORDS, fmt, None) == render(WORDS, fmt, WriterOptions())
    for fmt in ("txt", "tsv", "json"):
        assert render(WORDS, fmt, WriterOptions(max_line_width=5)) == render(WORDS, fmt)


def test_all_formats_with_words(tmp_path):
    options = WriterOptions(max_line_width=20, max_line_count=2)
    paths = write_result(WORDS, "clip.wav", tmp_path, "all", options)
    assert sorted(p.name for p in paths) == sorted(f"clip.{f}" for f in FORMATS)
    assert (tmp_path / "clip.srt").read_text() == render(WORDS, "srt", options)
    assert json.loads((tmp_path / "clip.json").read_text()) == WORDS
    assert (tmp_path / "clip.tsv").read_text() == render(WORDS, "tsv")


@pytest.mark.parametrize("kwargs, name", [
    (dict(max_line_width=0), "max_line_width"), (dict(max_line_count=-1), "max_line_count"),
    (dict(max_words_per_line=2.5), "max_words_per_line"), (dict(max_line_width=True), "max_line_width"),
    (dict(highlight_words="yes"), "highlight_words"),
])
def test_writer_options_are_checked(kwargs, name):
    with pytest.raises(OptionError, match=f"{name} must be"):
        WriterOptions(**kwargs)


def test_render_takes_writer_options_only():
    with pytest.raises(TypeError, match="WriterOptions"):
        render(WORDS, "srt", {"max_line_width": 10})


# ---------------------------------------------------------------------------------------------------------------
# transcribe.result_dict: words in openai-whisper's shape, no "words" key without word timestamps
def _segment(words):
    return Segment(id=0, seek=0, start=0.0, end=1.0, text=" Hi there.", tokens=[50364, 1, 2], temperature=0.0,
                   avg_logprob=-0.3, compression_ratio=1.1, no_speech_prob=0.02, words=words)


INFO = TranscriptionInfo(language="en", language_probability=1.0, duration=1.0, all_language_probs=None,
                         options=TranscriptionOptions())
SEGMENT_KEYS = ["id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio",
                "no_speech_prob"]


def test_result_dict_without_words_is_as_before():
    result = result_dict([_segment(None)], INFO)
    assert list(result) == ["text", "segments", "language"] and list(result["segments"][0]) == SEGMENT_KEYS
    assert result["segments"][0] == {k: v for k, v in dataclasses.asdict(_segment(None)).items() if k != "words"}
    assert "words" not in render(result, "json")


def test_result_dict_words_in_openai_whisper_order():
    words = [Word(start=0.0, end=0.4, word=" Hi", probability=0.75), Word(0.4, 1.0, " there.", 0.5)]
    result = result_dict([_segment(words), _segment([])], INFO)
    first, cleared = result["segments"]
    assert list(first) == SEGMENT_KEYS + ["words"] and cleared["words"] == []
    assert [list(w) for w in first["words"]] == [["word", "start", "end", "probability"]] * 2
    assert first["words"][1] == {"word": " there.", "start": 0.4, "end": 1.0, "probability": 0.5}
    assert json.loads(render(result, "json"))["segments"][0]["words"] == first["words"]
    assert render(result, "srt") == "1\n00:00:00,000 --> 00:00:01,000\nHi there.\n\n"
