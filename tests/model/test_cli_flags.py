"""The command line's flags against openai-whisper's ``whisper`` (its ``cli()`` is the reference): the same flags,
short forms and defaults, and the same parsed values for the same argv. No model is loaded here."""
import argparse
import sys

import pytest

from whisper_model.cli import args as cli_args
from whisper_model.errors import OptionError

WORD_LEVEL = {"word_timestamps", "prepend_punctuations", "append_punctuations", "highlight_words", "max_line_width",
              "max_line_count", "max_words_per_line", "hallucination_silence_threshold", "clip_timestamps"}
OURS_ONLY = {"input_file", "engine_dir", "dtype", "without_timestamps", "batch_size", "chunking", "vad_filter",
             "stop_repetition_loops", "weight_only_precision", "int8_kv_cache", "eager"}
DEFAULT_DIFFERS = {"model": ("turbo", "tiny.en")}  # turbo is not bundled; names resolve to bundled weights only


class _Parsed(Exception):
    pass


def openai_parse(argv, monkeypatch):
    """(namespace, parser) of openai-whisper's ``cli()`` for ``argv``: its parser, stopped right after parsing."""
    from whisper.transcribe import cli

    seen = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        seen["args"], seen["parser"] = original(self, args, namespace), self
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(sys, "argv", ["whisper", *argv])
    with pytest.raises(_Parsed):
        cli()
    monkeypatch.undo()
    return seen["args"], seen["parser"]


def options_of(parser):
    return {a.dest: a for a in parser._actions}


# one non-default value (or more) for every flag both parsers have
VALUES = [
    ("--model", "base"), ("--model", "tiny.en"), ("--model_dir", "/tmp/models"), ("--device", "cpu"),
    ("--device", "cuda"), ("--output_dir", "out"), ("-o", "out"), ("--output_format", "srt"), ("-f", "json"),
    ("--verbose", "False"), ("--verbose", "True"), ("--task", "translate"), ("--language", "fr"),
    ("--language", "French"), ("--language", "yue"), ("--temperature", "0.5"), ("--temperature", "2"),
    ("--best_of", "3"), ("--best_of", "None"), ("--beam_size", "None"), ("--beam_size", "2"),
    ("--patience", "2.0"), ("--length_penalty", "0.5"), ("--suppress_tokens", "1,2,3"),
    ("--suppress_tokens", ""), ("--initial_prompt", "Hello there."), ("--carry_initial_prompt", "True"),
    ("--condition_on_previous_text", "False"), ("--fp16", "False"),
    ("--temperature_increment_on_fallback", "None"), ("--temperature_increment_on_fallback", "0.1"),
    ("--compression_ratio_threshold", "None"), ("--compression_ratio_threshold", "2.0"),
    ("--logprob_threshold", "None"), ("--logprob_threshold", "-0.5"), ("--no_speech_threshold", "None"),
    ("--no_speech_threshold", "0.3"), ("--threads", "3"), ("--threads", "None"),
    ("--word_timestamps", "True"), ("--word_timestamps", "False"), ("--prepend_punctuations", "([\"'"),
    ("--prepend_punctuations", ""), ("--append_punctuations", ".,!?"), ("--append_punctuations", "。"),
    ("--clip_timestamps", "1.5,10,20"), ("--clip_timestamps", ""), ("--clip_timestamps", "0"),
    ("--hallucination_silence_threshold", "2"), ("--hallucination_silence_threshold", "None"),
]
# the srt/vtt word flags need --word_timestamps True (openai-whisper stops at parse time without it)
WORD_VALUES = [
    ("--highlight_words", "True"), ("--highlight_words", "False"), ("--max_line_width", "42"),
    ("--max_line_width", "None"), ("--max_line_count", "2"), ("--max_line_count", "None"),
    ("--max_words_per_line", "5"), ("--max_words_per_line", "None"),
]


def test_every_openai_flag_is_here_with_its_short_forms_and_default(monkeypatch):
    theirs, parser = openai_parse(["a.wav"], monkeypatch)
    ours = cli_args.parse_args(["a.wav"])
    their_options, our_options = options_of(parser), options_of(cli_args.build_parser())
    missing = set(their_options) - set(our_options)
    assert not missing, f"openai-whisper flags missing: {sorted(missing)}"
    assert set(our_options) - set(their_options) == OURS_ONLY
    for dest, action in their_options.items():
        if dest == "help":
            continue
        assert sorted(our_options[dest].option_strings) == sorted(action.option_strings), dest
        assert our_options[dest].help, f"--{dest} has no help text"
        expected = DEFAULT_DIFFERS.get(dest, (getattr(theirs, dest),) * 2)
        assert getattr(theirs, dest) == expected[0] and getattr(ours, dest) == expected[1], dest
    covered = {flag for flag, _ in VALUES + WORD_VALUES} | {"audio"}
    flags = {max(a.option_strings, key=len) if a.option_strings else a.dest for d, a in their_options.items()
             if d != "help"}
    assert {f"--{d}" for d in WORD_LEVEL} <= flags
    assert flags <= covered | {"-o", "-f"}, f"no parse test for {sorted(flags - covered)}"


@pytest.mark.parametrize("flag, value", VALUES, ids=[f"{f}={v}" for f, v in VALUES])
def test_same_parsed_value_as_openai_whisper(monkeypatch, flag, value):
    argv = ["a.wav", "b.mp3", flag, value]
    theirs, parser = openai_parse(argv, monkeypatch)
    ours = cli_args.parse_args(argv)
    dest = next(a.dest for a in parser._actions if flag in a.option_strings)
    assert getattr(ours, dest) == getattr(theirs, dest), f"{flag} {value}"
    assert type(getattr(ours, dest)) is type(getattr(theirs, dest)), f"{flag} {value}"
    assert ours.audio == theirs.audio == ["a.wav", "b.mp3"]


@pytest.mark.parametrize("flag, value", WORD_VALUES, ids=[f"{f}={v}" for f, v in WORD_VALUES])
def test_same_parsed_word_flag_as_openai_whisper(monkeypatch, capsys, flag, value):
    argv = ["a.wav", "--word_timestamps", "True", flag, value]
    theirs, parser = openai_parse(argv, monkeypatch)
    ours = cli_args.parse_args(argv)
    dest = next(a.dest for a in parser._actions if flag in a.option_strings)
    assert getattr(ours, dest) == getattr(theirs, dest), f"{flag} {value}"
    assert type(getattr(ours, dest)) is type(getattr(theirs, dest)), f"{flag} {value}"
    assert ours.word_timestamps is theirs.word_timestamps is True


def openai_cli_outcome(argv, monkeypatch, capsys):
    """What openai-whisper's ``cli()`` says about the word flags of ``argv``: ("error", its message) when it stops
    with a usage error, else ("warnings", [its warning texts]); stopped before it transcribes anything."""
    import warnings

    import whisper
    import whisper.transcribe  # noqa: F401  (the package's whisper.transcribe is the function: the module below)

    reference = sys.modules["whisper.transcribe"]

    class _Stop(Exception):
        pass

    monkeypatch.setattr(sys, "argv", ["whisper", *argv])
    monkeypatch.setattr(whisper, "load_model", lambda *a, **k: object())
    monkeypatch.setattr(reference, "get_writer", lambda *a, **k: None)
    monkeypatch.setattr(reference, "transcribe", lambda *a, **k: (_ for _ in ()).throw(_Stop()))
    monkeypatch.setattr(reference.traceback, "print_exc", lambda: None)
    monkeypatch.setattr(reference.os, "makedirs", lambda *a, **k: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            reference.cli()
        except SystemExit as e:
            assert e.code == 2
            return "error", capsys.readouterr().err.strip().splitlines()[-1]
    capsys.readouterr()
    return "warnings", [str(w.message) for w in caught if "English-only" not in str(w.message)]


@pytest.mark.parametrize("flags", [
    ["--highlight_words", "True"], ["--max_line_width", "42"], ["--max_line_count", "2"],
    ["--max_words_per_line", "3"], ["--word_timestamps", "False", "--max_line_width", "10"],
])
def test_word_flags_need_word_timestamps(monkeypatch, capsys, flags):
    name = flags[-2]
    kind, message = openai_cli_outcome(["a.wav", "--model", "tiny.en", *flags], monkeypatch, capsys)
    assert kind == "error" and f"{name} requires --word_timestamps True" in message  # the reference
    with pytest.raises(SystemExit) as e:
        cli_args.parse_args(["a.wav", *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"error: {name} requires --word_timestamps True" in err


@pytest.mark.parametrize("flags, expected", [
    (["--max_line_count", "2"], ["--max_line_count has no effect without --max_line_width"]),
    (["--max_words_per_line", "3", "--max_line_width", "20", "--max_line_count", "2"],
     ["--max_words_per_line has no effect with --max_line_width and --max_line_count"]),
    (["--max_words_per_line", "3", "--max_line_width", "20"],
     ["--max_words_per_line with --max_line_width: each subtitle still ends after 3 words of a segment"]),
    (["--max_line_count", "2", "--max_words_per_line", "3"],
     ["--max_line_count has no effect without --max_line_width"]),
    (["--max_line_width", "20", "--max_line_count", "2", "--highlight_words", "True"], []),
    (["--max_words_per_line", "3"], []),
])
def test_word_flag_warnings_where_openai_whisper_warns(monkeypatch, capsys, flags, expected):
    argv = ["a.wav", "--word_timestamps", "True", *flags]
    kind, theirs = openai_cli_outcome(["--model", "tiny.en", *argv], monkeypatch, capsys)
    assert kind == "warnings" and len(theirs) == len(expected)  # the same cases as the reference
    cli_args.parse_args(argv)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(expected)
    for line, text in zip(lines, expected):
        assert line.startswith(f"warning: {text}")


@pytest.mark.parametrize("argv, message", [
    (["--clip_timestamps", "5,2"], "--clip_timestamps: each clip must end after its start"),
    (["--clip_timestamps", "1,x"], "--clip_timestamps must be comma-separated seconds"),
    (["--clip_timestamps", "5", "--chunking", "vad"], "--clip_timestamps 5 cannot be used with --chunking vad"),
    (["--clip_timestamps", "0,10", "--vad_filter", "True"], "cannot be used with --vad_filter True"),
    (["--hallucination_silence_threshold", "0"], "--hallucination_silence_threshold must be a number of seconds"),
    (["--word_timestamps", "True", "--max_line_width", "0"], "--max_line_width must be a positive integer"),
])
def test_bad_word_flag_values_are_option_errors_naming_the_flag(argv, message):
    from whisper_model.cli.session import transcription_options, writer_options

    args = cli_args.parse_args(["a.wav", *argv])
    with pytest.raises(OptionError) as e:
        transcription_options(args)
        writer_options(args)
    assert message in cli_args.for_shell(str(e.value))


def test_word_flags_reach_the_options():
    from whisper_model.cli.session import transcription_options, writer_options
    from whisper_model.io.writers import WriterOptions

    args = cli_args.parse_args(["a.wav", "--word_timestamps", "True", "--prepend_punctuations", "(",
                                "--clip_timestamps", "1,2.5,4", "--hallucination_silence_threshold", "2",
                                "--append_punctuations", ".", "--max_line_width", "30", "--max_line_count", "2",
                                "--highlight_words", "True"])
    options = transcription_options(args)
    assert (options.word_timestamps, options.prepend_punctuations, options.append_punctuations) == (True, "(", ".")
    assert options.clip_timestamps == (1.0, 2.5, 4.0) and options.hallucination_silence_threshold == 2.0
    assert writer_options(args) == WriterOptions(highlight_words=True, max_line_width=30, max_line_count=2)
    defaults = transcription_options(cli_args.parse_args(["a.wav"]))
    assert not defaults.word_timestamps and not defaults.clipped and defaults.hallucination_silence_threshold is None
    assert transcription_options(cli_args.parse_args(["a.wav", "--chunking", "vad", "--clip_timestamps", "0"]))


def test_input_file_is_an_alias_of_the_positional_paths():
    assert cli_args.parse_args(["a.wav", "--input_file", "b.wav", "c.wav"]).audio == ["a.wav", "b.wav", "c.wav"]
    assert cli_args.parse_args(["--input_file", "b.wav"]).audio == ["b.wav"]


def test_our_extensions_of_openai_values():
    assert cli_args.parse_args(["a.wav", "--verbose", "None"]).verbose is None
    assert cli_args.parse_args(["a.wav", "--language", "auto"]).language is None
    assert cli_args.parse_args(["a.wav", "--language", "ENGLISH"]).language == "ENGLISH"


@pytest.mark.parametrize("argv, message", [
    ([], "no audio given"),
    (["a.wav", "--language", "xx"], "unknown language 'xx'"),
    (["a.wav", "--verbose", "maybe"], "--verbose"),
    (["a.wav", "-f", "doc"], "invalid choice: 'doc'"),
])
def test_bad_flags_are_one_usage_error(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        cli_args.parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert "print(sorted" not in err and "Traceback" not in err


def test_help_shows_every_default_and_the_languages(capsys):
    with pytest.raises(SystemExit):
        cli_args.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert "(default: tiny.en)" in text and "(default: 5)" in text and "(default: 0.2)" in text
    assert "device to run on: cpu, cuda or cuda:N (default: cpu" in text or "(default: cuda)" in text
    assert "Codes: af, am, ar" in text and ", yue, zh" in text
    for action in cli_args.build_parser()._actions:
        assert action.help, action.dest


def test_prog_is_the_installed_script_or_python_m(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/whisper-trtllm"])
    assert cli_args.build_parser().prog == "whisper-trtllm"
    monkeypatch.setattr(sys, "argv", ["/work/whisper_model/run.py"])
    assert cli_args.build_parser().prog == "python -m whisper_model.run"


@pytest.mark.parametrize("start, increment, schedule", [
    (0.0, 0.2, (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),
    (0.5, 0.25, (0.5, 0.75, 1.0)),
    (2.0, 0.2, (2.0,)),  # openai-whisper's schedule is empty here (and its transcribe fails); ours samples at 2
    (0.3, None, (0.3,)),
])
def test_temperature_schedule(start, increment, schedule):
    assert cli_args.temperatures(start, increment) == pytest.approx(schedule)


def test_temperature_increment_must_be_positive():
    with pytest.raises(OptionError, match="--temperature_increment_on_fallback must be positive"):
        cli_args.temperatures(0.0, 0.0)


@pytest.mark.parametrize("message, shell", [
    ("patience requires beam_size to be given", "--patience requires --beam_size to be given"),
    ("beam_size must be a positive integer or None, got 0", "--beam_size must be a positive integer or None, got 0"),
    ("task='translate' needs a multilingual model; this one is English-only",
     "--task translate needs a multilingual model; this one is English-only"),
    ("the language of the audio", "the language of the audio"),
])
def test_option_errors_name_flags(message, shell):
    assert cli_args.for_shell(message) == shell


def test_model_dir_finds_openai_whisper_file_names(tmp_path):
    (tmp_path / "large-v3-turbo.pt").write_bytes(b"")
    (tmp_path / "small.pt").write_bytes(b"")
    assert cli_args.model_source("turbo", str(tmp_path)) == str(tmp_path / "large-v3-turbo.pt")
    assert cli_args.model_source("small", str(tmp_path)) == str(tmp_path / "small.pt")
    assert cli_args.model_source("tiny.en", str(tmp_path)) == "tiny.en"  # not there: the bundled name
