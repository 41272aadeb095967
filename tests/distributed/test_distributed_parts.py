"""The job's parts without Ray: its flags (run.py's, same names and defaults, plus its own), the checks made before
anything starts, the manifest (what counts as done, a line cut by a crash, one job per folder), and the worker's
scheduler thread (files from several calls at once share its batch; a corrupt file fails alone)."""
from __future__ import annotations

import json
import os
import threading

import pytest

from _distributed_common import FLAGS, output_files
from _requires import require
from whisper_model.cli.args import build_parser
from whisper_model.distributed import command
from whisper_model.distributed.args import build_job_parser, parse_job_args, prepare, resolve_device
from whisper_model.distributed.manifest import MANIFEST_NAME, Manifest, read_records
from whisper_model.distributed.worker import TranscriptionWorker
from whisper_model.service import english_only_language
from whisper_model.errors import OptionError, OutputError


def test_every_flag_of_run_py_with_its_default_and_the_jobs_own():
    theirs = {a.dest: a for a in build_parser()._actions}  # noqa: SLF001
    ours = {a.dest: a for a in build_job_parser()._actions}  # noqa: SLF001
    assert set(theirs) <= set(ours)
    for dest, action in theirs.items():
        assert ours[dest].option_strings == action.option_strings, dest
        if dest != "device":  # ours: None, decided with --gpus_per_worker (the same on this machine's defaults)
            assert ours[dest].default == action.default, dest
    extra = set(ours) - set(theirs)
    assert extra == {"num_workers", "gpus_per_worker", "cpus_per_worker", "address"}
    args = parse_job_args(["a.wav", "--input_file", "b.wav"])
    assert args.audio == ["a.wav", "b.wav"] and args.num_workers == 1 and args.address is None


def test_the_word_flags_reach_the_workers_and_the_writers(capsys):
    from whisper_model.io.writers import WriterOptions

    spec = prepare(parse_job_args(["x.wav", "--device", "cpu", "--word_timestamps", "True", "--clip_timestamps",
                                   "0,5", "--hallucination_silence_threshold", "1.5", "--max_line_width", "30",
                                   "--max_words_per_line", "4", "--highlight_words", "True"]))
    options = spec.worker.options
    assert options.word_timestamps and options.clip_timestamps == (0.0, 5.0)
    assert options.hallucination_silence_threshold == 1.5
    assert spec.writer == WriterOptions(highlight_words=True, max_line_width=30, max_words_per_line=4)
    assert capsys.readouterr().err.startswith("warning: --max_words_per_line with --max_line_width")
    assert prepare(parse_job_args(["x.wav", "--device", "cpu"])).writer == WriterOptions()
    with pytest.raises(SystemExit) as e:
        parse_job_args(["x.wav", "--highlight_words", "True"])
    assert e.value.code == 2 and "--highlight_words requires --word_timestamps True" in capsys.readouterr().err


@pytest.mark.parametrize("device, gpus, expected", [
    ("cpu", None, ("cpu", 0.0)), ("cuda", None, ("cuda", 1.0)), (None, 0.5, ("cuda", 0.5)), (None, 0.0, ("cpu", 0.0)),
])
def test_device_and_gpus_per_worker(device, gpus, expected):
    assert resolve_device(device, gpus) == expected


@pytest.mark.parametrize("argv, message", [
    (["--device", "cuda:1"], "--device cuda:1: a worker's device is cpu or cuda: Ray gives each worker its GPUs"),
    (["--device", "cpu", "--gpus_per_worker", "1"], "the GPUs would sit idle"),
    (["--device", "cuda", "--gpus_per_worker", "0"], "--device cuda needs --gpus_per_worker above 0"),
    (["--num_workers", "0"], "--num_workers must be a positive integer"),
    (["--chunking", "vad", "--condition_on_previous_text", "True"], "cannot be used with --chunking vad"),
    (["--chunking", "vad", "--clip_timestamps", "1,2"], "--clip_timestamps 1,2 cannot be used with --chunking vad"),
    (["--word_timestamps", "True", "--max_line_count", "0"], "--max_line_count must be a positive integer"),
])
def test_bad_flags_stop_the_job_before_ray_starts(tmp_path, capsys, argv, message):
    with pytest.raises(OptionError, match="."):
        prepare(parse_job_args(["x.wav", "-o", str(tmp_path), *argv]))
    assert command.main(["x.wav", "-o", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_an_unreachable_cluster_is_one_line_and_exit_status_2(tmp_path, capsys):
    from _processes import free_port

    require("ray")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    (tmp_path / "x.wav").write_bytes(b"x")
    assert command.main([str(tmp_path / "x.wav"), "-o", str(tmp_path), "--device", "cpu", "--address", address]) == 2
    err = capsys.readouterr().err
    assert f"error: --address {address}: cannot reach the cluster's head node" in err


def test_an_english_only_model_given_another_language_uses_english():
    spec = prepare(parse_job_args(["x.wav", "--language", "French", "--device", "cpu"])).worker
    language, warning = english_only_language(spec.language, False, spec.model_label)
    assert language == "en" and "English-only model but got --language French" in warning
    assert english_only_language(spec.language, True, spec.model_label) == ("French", None)


def test_the_manifest_says_what_is_done(tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x" * 10)
    out = tmp_path / "out"
    with Manifest(str(out), "txt") as manifest:
        assert not manifest.is_done(str(audio))
        (out / "a.txt").write_text("hi\n")
        manifest.record(str(audio), "done", outputs=["a.txt"])
        assert manifest.is_done(str(audio))
        with pytest.raises(OutputError, match="another job is writing to it"):
            Manifest(str(out), "txt").open()
    with Manifest(str(out), "all") as manifest:
        assert not manifest.is_done(str(audio))  # -f all: a.srt ... are not there
    with Manifest(str(out), "txt") as manifest:
        assert manifest.is_done(str(audio))
        os.utime(audio, ns=(1, 1))  # the input changed since
        assert not manifest.is_done(str(audio))


def test_a_line_cut_by_a_crash_is_ignored_and_the_next_record_stands_alone(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"a")
    (tmp_path / "b.wav").write_bytes(b"b")
    with Manifest(str(tmp_path), "txt") as manifest:
        manifest.record(str(tmp_path / "a.wav"), "done", outputs=[])
    with open(tmp_path / MANIFEST_NAME, "a") as f:
        f.write('{"input": "/x.wav", "status": "do')  # the driver died while appending
    with Manifest(str(tmp_path), "txt") as manifest:
        assert set(manifest.records) == {str(tmp_path / "a.wav")}
        manifest.record(str(tmp_path / "b.wav"), "failed", error="AudioError: bad")
    assert set(read_records(tmp_path / MANIFEST_NAME)) == {str(tmp_path / "a.wav"), str(tmp_path / "b.wav")}


def test_the_worker_shares_its_batch_between_calls_and_a_corrupt_file_fails_alone(tmp_path, clips, reference):
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"\xff\xfb" + b"\x00" * 500)
    spec = prepare(parse_job_args([*clips, "-o", str(tmp_path), *FLAGS, "--batch_size", "3"])).worker
    worker = TranscriptionWorker(spec, "w")
    assert worker.ready()["error"] is None and worker.ready()["device"] == "cpu"
    outcomes = {}
    calls = [threading.Thread(target=lambda p=p: outcomes.__setitem__(p, worker.transcribe(p)))
             for p in [*clips, str(corrupt)]]
    for call in calls:
        call.start()
    for call in calls:
        call.join(120)
    assert "error" in outcomes[str(corrupt)] and str(corrupt) in outcomes[str(corrupt)]["error"]
    for path in clips:
        name = os.path.splitext(os.path.basename(path))[0] + ".txt"
        text = "".join(s["text"].strip() + "\n" for s in outcomes[path]["result"]["segments"])
        assert text.encode() == output_files(reference)[name], path
        assert outcomes[path]["duration"] > 0 and outcomes[path]["worker"].startswith("w@")
    assert json.dumps(outcomes[clips[0]])  # what goes back to the driver is plain data


def test_an_engine_directory_and_options_no_flag_sets_reach_the_worker(tmp_path, clips):
    """``--engine_dir`` on a worker (here the CPU) and ``Job(..., options=)`` / ``prepare(args, options)``: the
    options of a random-weights benchmark (exactly 4 tokens per window, end-of-text suppressed: ``sample_len`` has
    no flag) are those every file is transcribed with."""
    from whisper_model.fast.build import build
    from whisper_model.options import TranscriptionOptions

    build("tiny.en", tmp_path / "eng", dtype="float32", max_batch_size=2, warm=False)
    argv = [clips[2], "-o", str(tmp_path), "--engine_dir", str(tmp_path / "eng"), *FLAGS, "--batch_size", "2"]
    assert prepare(parse_job_args(argv)).worker.options.sample_len is None
    forced = TranscriptionOptions(temperature=0.0, without_timestamps=True, sample_len=4, suppress_blank=False,
                                  suppress_tokens=(-1, 50256), compression_ratio_threshold=None,
                                  logprob_threshold=None, no_speech_threshold=None)  # 50256: gpt2's end-of-text
    spec = prepare(parse_job_args(argv), forced).worker
    assert spec.options is forced and spec.engine_dir == str(tmp_path / "eng")
    worker = TranscriptionWorker(spec, "w")
    assert worker.ready()["error"] is None and worker.ready()["device"] == "cpu"
    assert type(worker.model.model).__name__ == "AcceleratedWhisper"
    outcome = worker.transcribe(clips[2])
    assert [len(s["tokens"]) for s in outcome["result"]["segments"]] == [4]
