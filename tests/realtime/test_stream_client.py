"""``python -m whisper_model.stream``: what it prints, and one line naming the problem (status 2) for a missing
file or a URL nothing answers at. (Streaming to a server: test_live_transcription.py.)"""
from __future__ import annotations

import io


from _requires import require

require("websockets")

from whisper_model.cli.stream import Printer, main, realtime_url, session_update  # noqa: E402

from ._live_server import free_port  # noqa: E402


def test_a_missing_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.wav"
    assert main([str(missing), "--url", f"ws://127.0.0.1:{free_port()}/v1/realtime"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read") and "nope.wav" in err


def test_a_url_nothing_answers_at_is_named(capsys):
    url = f"ws://127.0.0.1:{free_port()}/v1/realtime"
    assert main(["samples/jfk.mp3", "--url", url, "--speed", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot connect to {url}")


def test_a_negative_speed_is_refused(capsys):
    assert main(["samples/jfk.mp3", "--speed", "-1"]) == 2
    assert "--speed must be >= 0" in capsys.readouterr().err


def test_the_url_gets_the_transcription_intent_and_the_session_its_settings():
    assert realtime_url("ws://h:1/v1/realtime") == "ws://h:1/v1/realtime?intent=transcription"
    assert realtime_url("ws://h:1/v1/realtime?model=x") == "ws://h:1/v1/realtime?model=x&intent=transcription"
    vad = session_update("en", "server_vad")["session"]["audio"]["input"]
    assert vad["turn_detection"]["type"] == "server_vad" and vad["transcription"] == {"language": "en"}
    assert session_update(None, "none")["session"]["audio"]["input"]["turn_detection"] is None


def test_deltas_are_written_on_one_line_per_item_and_each_completed_item_after_them():
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(out, err)
    delta = "conversation.item.input_audio_transcription.delta"
    for event in ({"type": "input_audio_buffer.committed", "item_id": "item_a"},
                  {"type": delta, "item_id": "item_a", "delta": "Hello"},
                  {"type": delta, "item_id": "item_a", "delta": " world."},
                  {"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_a",
                   "transcript": "Hello world.", "usage": {"type": "duration", "seconds": 1.5}},
                  {"type": "error", "error": {"message": "bad", "code": "x"}}):
        printer.show(event)
    assert out.getvalue() == "... Hello world.\n[item_a 1.5 s] Hello world.\n"
    assert err.getvalue() == "error from the server: bad (x)\n"
    assert printer.completed == ["Hello world."] and printer.committed <= printer.done


def test_a_failed_item_is_reported_and_counts_as_done():
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(out, err)
    printer.show({"type": "input_audio_buffer.committed", "item_id": "item_b"})
    assert not printer.committed <= printer.done
    printer.show({"type": "conversation.item.input_audio_transcription.failed", "item_id": "item_b",
                  "content_index": 0, "error": {"type": "server_error", "code": "transcription_failed",
                                                "message": "RuntimeError: no rows", "param": None}})
    assert err.getvalue() == "item item_b failed: RuntimeError: no rows\n" and out.getvalue() == ""
    assert printer.committed <= printer.done and printer.errors[0]["code"] == "transcription_failed"
