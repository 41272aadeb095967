"""The command line run in-process (tiny.en on the CPU): positional inputs, temperature > 0 with the default flags,
missing inputs skipped, --verbose True / False / None, the summary line, and user errors without a traceback."""
import json
from pathlib import Path

import pytest
import torch

from whisper_model.cli import run

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "jfk.mp3"
GREEDY = ["--device", "cpu", "--beam_size", "None"]
JFK = "ask not what your country can do for you"


def _run(capsys, *argv):
    code = run.main([str(a) for a in argv])
    return code, capsys.readouterr()


def test_temperature_above_zero_with_the_default_flags_samples(tmp_path, capsys):
    """openai-whisper's rule: beam search (the default --beam_size 5) only at temperature 0, best_of above it."""
    torch.manual_seed(0)
    code, out = _run(capsys, SAMPLE, "--temperature", "0.5", "--device", "cpu", "-o", tmp_path, "-f", "json",
                     "--verbose", "None")
    assert code == 0, out.err
    result = json.loads((tmp_path / "jfk.json").read_text())
    assert result["segments"] and all(s["temperature"] >= 0.5 for s in result["segments"])
    assert "country" in result["text"].lower()


def test_positional_inputs_a_missing_one_is_skipped_and_the_others_done(tmp_path, capsys):
    missing = tmp_path / "nope.wav"
    code, out = _run(capsys, missing, SAMPLE, "-o", tmp_path / "o", "-f", "txt", "--verbose", "None", *GREEDY)
    assert code == 1  # an input was missing
    assert JFK in (tmp_path / "o" / "jfk.txt").read_text().lower()
    lines = out.err.strip().splitlines()
    assert lines[0] == f"error: {missing}: no such file; skipped"
    assert lines[-1].startswith("done 1, failed 0, skipped 1; 11.0 s of audio in ")
    assert "real-time factor" in lines[-1] and len(lines) == 2
    assert out.out == ""  # --verbose None: no segments


def test_only_missing_inputs_load_no_model_and_write_nothing(tmp_path, capsys):
    code, out = _run(capsys, tmp_path / "a.wav", "--input_file", tmp_path, "-o", tmp_path / "o", *GREEDY)
    assert code == 1
    assert "a.wav: no such file; skipped" in out.err and "a directory with no media files (" in out.err
    assert "done 0, failed 0, skipped 2; 0.0 s of audio" in out.err
    assert not (tmp_path / "o").exists()


def test_verbose_true_prints_segments_as_openai_whisper_does(tmp_path, capsys):
    code, out = _run(capsys, SAMPLE, "-o", tmp_path, "-f", "txt", *GREEDY)
    assert code == 0
    first = out.out.splitlines()[0]
    assert first.startswith("[00:00.000 --> 00:0") and JFK.split()[0] in first.lower()
    assert "100%" not in out.err  # no bar with --verbose True
    assert f"{SAMPLE}: language=en duration=11.0s" in out.err


def test_verbose_false_shows_one_bar_over_every_file(tmp_path, capsys):
    bobby = REPO / ".." / "shared" / "data" / "audio" / "en_bobby.wav"
    inputs = [SAMPLE, bobby] if bobby.is_file() else [SAMPLE, SAMPLE]
    code, out = _run(capsys, *inputs, "-o", tmp_path, "-f", "txt", "--verbose", "False", "--batch_size", "2",
                     *GREEDY)
    assert code == 0
    assert out.out == ""  # no segments with --verbose False
    total = 11.0 + (1.2 if bobby.is_file() else 11.0)
    assert "100%" in out.err and f"{total:.1f}/{total:.1f} s of audio" in out.err
    assert "2/2 files" in out.err and "reading " in out.err


def test_english_only_model_with_another_language_warns_and_uses_english(tmp_path, capsys):
    code, out = _run(capsys, SAMPLE, "--language", "French", "-o", tmp_path, "-f", "txt", "--verbose", "None",
                     *GREEDY)
    assert code == 0
    assert "warning: tiny.en is an English-only model but got --language French; using English" in out.err
    assert JFK in (tmp_path / "jfk.txt").read_text().lower()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_and_no_traceback(tmp_path, capsys):
    code, out = _run(capsys, SAMPLE, "--device", "cuda", "-o", tmp_path / "o")
    assert code == 2
    assert out.err.strip().splitlines() == [out.err.strip()]
    assert out.err.startswith("error: --device cuda: CUDA is not available on this machine") and "--device cpu" in out.err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", [
    (["--device", "tpu"], "--device tpu: not a device"),
    (["--fp16", "False", "--dtype", "float16"], "--fp16 False contradicts --dtype float16"),
    (["--threads", "-2"], "--threads must be 0"),
    (["--beam_size", "None", "--patience", "2"], "--patience requires --beam_size"),
    (["--length_penalty", "3"], "--length_penalty (alpha) must be between 0 and 1"),
    (["--task", "translate"], "--task translate needs a multilingual model"),
    (["--model", "no-such-model"], "unknown model name 'no-such-model'"),
])
def test_bad_options_are_one_line_naming_the_flag(tmp_path, capsys, argv, message):
    code, out = _run(capsys, SAMPLE, "-o", tmp_path / "o", "--device", "cpu", *argv)
    assert code == 2
    assert out.err.strip() == f"error: {out.err.strip()[7:]}" and message in out.err, out.err
    assert "\n" not in out.err.strip() and "Traceback" not in out.err
    assert not (tmp_path / "o").exists()


def test_output_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out = _run(capsys, SAMPLE, "-o", blocker / "sub", *GREEDY)
    assert code == 2 and out.err.startswith(f"error: --output_dir {blocker / 'sub'}: cannot be made: {blocker} is "
                                            "not a directory")


def test_progress_bar_moves_within_a_window(tmp_path, capsys, monkeypatch):
    """--verbose False: the bar advances while the sample's one window is decoded (the scheduler's on_progress),
    not only when the window is done."""
    from whisper_model.cli.progress import Progress

    seen, real = [], Progress.advance
    monkeypatch.setattr(Progress, "advance", lambda self, i, s: (seen.append(s), real(self, i, s)))
    code, out = _run(capsys, SAMPLE, "-o", tmp_path, "-f", "txt", "--verbose", "False", *GREEDY)
    assert code == 0, out.err
    inside = [s for s in seen if 0 < s < 11.0]
    assert len(inside) >= 2 and inside == sorted(inside), seen
    assert "11.0/11.0 s of audio" in out.err


def test_chunking_vad_and_vad_filter_transcribe_and_refuse_what_they_cannot_honour(tmp_path, capsys):
    """--chunking vad: a clip under 30 s is one chunk, so the text equals the sequential one; an explicit
    --condition_on_previous_text True (the chunks never see the previous text) and --vad_filter together with
    --chunking vad are one-line errors before any model is loaded."""
    code, out = _run(capsys, SAMPLE, "-o", tmp_path / "seq", "-f", "txt", "--verbose", "None", *GREEDY)
    assert code == 0, out.err
    for flags in (["--chunking", "vad"], ["--vad_filter", "True"], ["--chunking", "vad", "--batch_size", "2"]):
        folder = tmp_path / "_".join(flags)
        code, out = _run(capsys, SAMPLE, "-o", folder, "-f", "txt", "--verbose", "None", *GREEDY, *flags)
        assert code == 0, out.err
        assert (folder / "jfk.txt").read_text() == (tmp_path / "seq" / "jfk.txt").read_text(), flags
    for flags, message in ((["--chunking", "vad", "--condition_on_previous_text", "True"],
                            "--condition_on_previous_text True cannot be used with --chunking vad"),
                           (["--chunking", "vad", "--vad_filter", "True"],
                            "--vad_filter True applies to the sequential path (--chunking none)")):
        code, out = _run(capsys, SAMPLE, "-o", tmp_path / "bad", *GREEDY, *flags)
        assert code == 2 and out.err.startswith("error: ") and message in out.err, out.err
        assert "\n" not in out.err.strip() and not (tmp_path / "bad").exists()
