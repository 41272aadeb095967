"""The command line: outputs for real audio, and bad input that leaves no partial output behind."""
import json
from pathlib import Path

import pytest

from whisper_model.cli import run

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "jfk.mp3"
CPU = ["--device", "cpu", "--dtype", "float32", "--verbose", "False"]


def _run(argv, capsys):
    try:
        code = run.main([str(a) for a in argv])
    except SystemExit as e:  # a flag argparse refuses: one line, status 2
        code = e.code
    return code, capsys.readouterr()


def test_transcribes_the_sample_in_every_format(tmp_path, capsys):
    code, out = _run(["--input_file", SAMPLE, "--output_dir", tmp_path, "--beam_size", "None", *CPU], capsys)
    assert code == 0, out.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"jfk.{f}" for f in ("json", "srt", "tsv", "txt", "vtt")]
    text = (tmp_path / "jfk.txt").read_text().lower()
    assert "ask not what your country can do for you" in text
    result = json.loads((tmp_path / "jfk.json").read_text())
    assert result["language"] == "en" and result["segments"]
    seg = result["segments"][0]
    assert set(seg) >= {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                        "compression_ratio", "no_speech_prob"}
    assert 0.0 <= seg["start"] < seg["end"] <= 11.1
    assert (tmp_path / "jfk.srt").read_text().startswith("1\n00:00:00,000 --> ")


def test_missing_input_is_reported_and_writes_nothing(tmp_path, capsys):
    code, out = _run(["--input_file", tmp_path / "nope.wav", "--output_dir", tmp_path / "o", *CPU], capsys)
    assert code == 1 and f"error: {tmp_path / 'nope.wav'}: no such file; skipped" in out.err
    assert not (tmp_path / "o").exists()


def test_corrupt_file_fails_alone_without_partial_output(tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_text("this is not audio")
    out_dir = tmp_path / "o"
    code, out = _run(["--input_file", bad, SAMPLE, "--output_dir", out_dir, "--output_format", "txt",
                      "--beam_size", "None", *CPU], capsys)
    assert code == 1
    assert "bad.wav" in out.err
    assert sorted(p.name for p in out_dir.iterdir()) == ["jfk.txt"]  # the good file still done, nothing for bad


@pytest.mark.parametrize("argv, message", [
    (["--model", "no-such-model"], "no-such-model"),
    (["--task", "translate"], "translate"),
    (["--language", "xx"], "xx"),
    (["--temperature_increment_on_fallback", "0"], "temperature_increment_on_fallback"),
])
def test_bad_options_are_clear_errors(tmp_path, capsys, argv, message):
    code, out = _run(["--input_file", SAMPLE, "--output_dir", tmp_path / "o", *CPU, *argv], capsys)
    assert code != 0
    assert message in out.err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
