"""The command line's checks of its paths before any weights load (cli/inputs.py): directories expand to their
media files, unreadable inputs are skipped with a reason, an output folder that cannot be written is an option
error; and the run itself: these are found before the model is loaded."""
import os
import shutil
from pathlib import Path

import pytest

from whisper_model.cli import inputs as I
from whisper_model.cli import run
from whisper_model.errors import OptionError

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "jfk.mp3"


def test_a_directory_expands_to_its_media_files_sorted(tmp_path):
    for name in ("b.MP3", "a.wav", "notes.txt", "c.flac"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.wav").mkdir()  # a directory named like media is not a file
    (tmp_path / "empty").mkdir()
    found = I.expand_inputs([str(tmp_path), str(tmp_path / "empty"), str(tmp_path / "nope.wav")])
    assert found.files == [str(tmp_path / n) for n in ("a.wav", "b.MP3", "c.flac")]
    assert found.notes == [f"{tmp_path}: 3 media files"]
    assert found.problems[0].startswith(f"{tmp_path / 'empty'}: a directory with no media files (")
    assert found.problems[1] == f"{tmp_path / 'nope.wav'}: no such file"


def test_unreadable_inputs_are_problems(tmp_path, monkeypatch):
    target = tmp_path / "locked.wav"
    target.write_bytes(b"x")
    real = os.access
    monkeypatch.setattr(I.os, "access", lambda p, mode: False if str(p) == str(target) else real(p, mode))
    found = I.expand_inputs([str(target)])
    assert found.files == [] and found.problems == [f"{target}: permission denied (not readable)"]


def test_output_dir_checks_create_nothing(tmp_path, monkeypatch):
    I.check_output_dir(str(tmp_path / "new" / "deeper"))  # can be made
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OptionError, match="exists and is not a directory"):
        I.check_output_dir(str(tmp_path / "file"))
    with pytest.raises(OptionError, match=f"cannot be made: {tmp_path / 'file'} is not a directory"):
        I.check_output_dir(str(tmp_path / "file" / "x"))
    monkeypatch.setattr(I.os, "access", lambda p, mode: False)
    with pytest.raises(OptionError, match="permission denied"):
        I.check_output_dir(str(tmp_path))
    with pytest.raises(OptionError, match="is not writable"):
        I.check_output_dir(str(tmp_path / "new"))


def test_bad_paths_are_found_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """An unwritable output folder ends the run before any weights are read; a directory input is expanded and
    said; the run transcribes its media files."""
    from whisper_model.cli import session

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(session, "load_model", no_model)
    (tmp_path / "file").write_text("x")
    code = run.main([str(SAMPLE), "-o", str(tmp_path / "file" / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "--output_dir" in err and "not a directory" in err
    monkeypatch.undo()
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(SAMPLE, media / "one.mp3")
    code = run.main([str(media), "-o", str(tmp_path / "o"), "-f", "txt", "--device", "cpu", "--beam_size", "None"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"{media}: 1 media file" in err and (tmp_path / "o" / "one.txt").read_text().strip()


def test_temperature_above_one_says_what_schedule_it_makes(tmp_path, capsys):
    code = run.main([str(SAMPLE), "--temperature", "2", "-o", str(tmp_path), "-f", "txt", "--device", "cpu",
                     "--best_of", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "note: --temperature 2 is above 1, so there is no fallback: every window is sampled at 2" in err
