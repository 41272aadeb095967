"""The command line's progress display driven by scheduler-like events (no model): one bar over the audio seconds
of all inputs that moves with each decoded window, "reading <file>" before an input is read, openai-whisper's
segment lines with --verbose True."""
import io
import wave
from pathlib import Path

from whisper_model.cli.progress import Progress, probe_seconds
from whisper_model.longform import Segment


def _wav(path: Path, seconds: float) -> str:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(b"\0\0" * int(seconds * 16000))
    return str(path)


def _segment(start, end, text):
    return Segment(id=0, seek=0, start=start, end=end, text=text, tokens=[], temperature=0.0, avg_logprob=-0.1,
                   compression_ratio=1.0, no_speech_prob=0.0)


def test_probe_reads_the_header_duration(tmp_path):
    assert probe_seconds(_wav(tmp_path / "a.wav", 2.5)) == 2.5
    (tmp_path / "bad.wav").write_text("not audio")
    assert probe_seconds(str(tmp_path / "bad.wav")) is None


def test_one_bar_over_all_files_moves_per_window_and_drops_what_failed(tmp_path):
    paths = [_wav(tmp_path / "a.wav", 40.0), _wav(tmp_path / "b.wav", 30.0)]
    err, out = io.StringIO(), io.StringIO()
    progress = Progress(paths, verbose=False, batch_size=1, err=err, out=out)
    bar = progress.bar
    assert bar.total == 70.0 and "reading a.wav" in err.getvalue() and "reading b.wav" not in err.getvalue()
    progress.started(0, 40.0)
    progress.segments(0, [_segment(0.0, 4.0, " hello")], 28.5)  # a window decoded: the bar moves within the file
    assert bar.n == 28.5
    progress.advance(0, 20.0)  # never back
    assert bar.n == 28.5
    progress.finished(0, 40.0, "a.wav: done")
    assert bar.n == 40.0 and "a.wav: done" in err.getvalue() and "reading b.wav" in err.getvalue()
    progress.failed(1, "error: b.wav: broken")  # nothing of it will be transcribed: the total drops
    assert bar.total == 40.0 and "error: b.wav: broken" in err.getvalue()
    progress.close()
    assert "40.0/40.0 s of audio" in err.getvalue() and "2/2 files" in err.getvalue()
    assert out.getvalue() == ""  # --verbose False prints no segments


def test_actual_duration_replaces_the_header_one(tmp_path):
    paths = [_wav(tmp_path / "a.wav", 10.0), str(tmp_path / "unknown.xyz")]
    progress = Progress(paths, verbose=False, batch_size=2, err=io.StringIO(), out=io.StringIO())
    assert progress.bar.total == 10.0  # the second announces no duration
    progress.started(1, 7.0)
    progress.started(0, 10.5)
    assert progress.bar.total == 17.5


def test_verbose_true_prints_segments_and_reading_before_a_long_input(tmp_path):
    paths = [_wav(tmp_path / "short.wav", 2.0), _wav(tmp_path / "long.wav", 61.0)]
    err, out = io.StringIO(), io.StringIO()
    progress = Progress(paths, verbose=True, batch_size=2, err=err, out=out)
    assert err.getvalue() == f"reading {paths[1]} (01:01 of audio)\n"  # the short one is read without a word
    progress.started(0, 2.0)
    progress.segments(0, [_segment(0.0, 1.5, " Hi there.")], 2.0)
    assert out.getvalue() == f"{paths[0]}: [00:00.000 --> 00:01.500] Hi there.\n"  # several files: names first
    assert progress.bar is None


def test_verbose_none_prints_errors_only(tmp_path):
    err, out = io.StringIO(), io.StringIO()
    progress = Progress([_wav(tmp_path / "a.wav", 61.0)], verbose=None, err=err, out=out)
    progress.started(0, 61.0)
    progress.segments(0, [_segment(0.0, 1.5, " Hi.")], 30.0)
    progress.finished(0, 61.0, "a.wav: done")
    assert out.getvalue() == "" and err.getvalue() == ""
    progress.error("error: x")
    assert err.getvalue() == "error: x\n"
