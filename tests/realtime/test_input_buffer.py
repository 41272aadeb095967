"""The input audio buffer: VAD turns become committed utterances of exactly the audio between them, a client's
commit and clear work as OpenAI's do, and a silent session keeps no growing audio."""
from __future__ import annotations

import numpy as np
import pytest

from whisper_model.realtime.config import SessionConfig
from whisper_model.realtime.events import ProtocolError
from whisper_model.realtime.input_buffer import MIN_COMMIT_MS, InputAudioBuffer

from ._openai import validated_event
from ._clips import SR, pcm16, speech

SESSION_16K = SessionConfig(sample_rate=16000)


def feed(buffer: InputAudioBuffer, data: bytes, step: int = 3200):
    events, utterances = [], []
    for at in range(0, len(data), step):
        result = buffer.append(data[at:at + step])
        events += result.events
        utterances += result.utterances
    return events, utterances


def test_vad_turns_become_committed_utterances():
    audio = speech()
    half = len(audio) // 2
    joined = np.concatenate([audio[:half], np.zeros(2 * SR, np.float32), audio[half:], np.zeros(SR, np.float32)])
    data = pcm16(joined)
    events, utterances = feed(InputAudioBuffer(SESSION_16K), data)
    for event in events:
        validated_event(event)
    assert [e["type"].rpartition(".")[2] for e in events] == ["speech_started", "speech_stopped", "committed"] * 2
    first, second = utterances
    assert [e["item_id"] for e in events] == [first.item_id] * 3 + [second.item_id] * 3
    assert first.item_id != second.item_id
    assert (first.previous_item_id, second.previous_item_id) == (None, first.item_id)
    assert events[3]["audio_start_ms"] == second.start * 1000 // SR
    assert events[4]["audio_end_ms"] == (second.start + len(second.samples)) * 1000 // SR
    exact = np.frombuffer(data, "<i2") / np.float32(32768)
    for utterance in utterances:  # exactly the session's audio between the turns
        end = utterance.start + len(utterance.samples)
        np.testing.assert_array_equal(utterance.samples, exact[utterance.start:end])
    assert first.start < SR // 2 and half < first.start + len(first.samples) < half + SR
    assert half + 2 * SR - SR // 2 < second.start < half + 2 * SR


def test_speech_in_progress_grows_under_its_item_id():
    buffer = InputAudioBuffer(SESSION_16K)
    data = pcm16(speech())
    events, _ = feed(buffer, data[:SR * 2 * 2])  # 2 s: speech has started
    assert [e["type"] for e in events] == ["input_audio_buffer.speech_started"]
    now = buffer.speech()
    assert now.item_id == events[0]["item_id"] and now.start * 1000 // SR == events[0]["audio_start_ms"]
    assert len(now.samples) == buffer.samples - now.start
    feed(buffer, data[SR * 2 * 2:SR * 2 * 3])
    assert buffer.speech().item_id == now.item_id and len(buffer.speech().samples) == len(now.samples) + SR


def test_a_client_commit_takes_the_buffer_and_needs_100_ms():
    buffer = InputAudioBuffer(SessionConfig(turn_detection=None))  # 24 kHz, no VAD
    with pytest.raises(ProtocolError) as info:
        buffer.commit("evt_1")
    assert (info.value.code, info.value.event_id) == ("input_audio_buffer_commit_empty", "evt_1")
    assert f"{MIN_COMMIT_MS} ms" in info.value.message
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(24000) / 24000)
    assert buffer.append(pcm16(tone[:12000])).events == []
    buffer.append(pcm16(tone[12000:]))
    result = buffer.commit()
    (utterance,) = result.utterances
    assert [validated_event(e).type for e in result.events] == ["input_audio_buffer.committed"]
    assert utterance.start == 0 and len(utterance.samples) == SR  # 1 s at 24 kHz -> 16000 samples, flushed
    buffer.append(pcm16(tone[:12000]))
    cleared = buffer.clear()
    assert [validated_event(e).type for e in cleared.events] == ["input_audio_buffer.cleared"]
    with pytest.raises(ProtocolError, match="buffer too small"):
        buffer.commit()
    buffer.append(pcm16(tone[:4800]))  # 200 ms
    (second,) = buffer.commit().utterances
    assert second.previous_item_id == utterance.item_id and second.start >= SR + 8000 - 64


def test_a_commit_during_speech_ends_it():
    buffer = InputAudioBuffer(SESSION_16K)
    data = pcm16(speech())
    events, _ = feed(buffer, data[:SR * 2 * 2])
    result = buffer.commit("evt_2")
    (utterance,) = result.utterances
    assert utterance.item_id == events[0]["item_id"] and buffer.speech() is None
    assert result.events[-1]["type"] == "input_audio_buffer.committed"
    more, _ = feed(buffer, data[SR * 2 * 2:])  # the speech goes on: a new item starts after the commit
    assert more[0]["type"] == "input_audio_buffer.speech_started" and more[0]["item_id"] != utterance.item_id
    assert more[0]["audio_start_ms"] >= (utterance.start + len(utterance.samples)) * 1000 // SR


def test_silence_keeps_no_growing_audio():
    buffer = InputAudioBuffer(SESSION_16K)
    events, utterances = feed(buffer, pcm16(np.zeros(20 * SR, np.float32)))
    assert events == [] and utterances == [] and buffer.speech() is None
    assert buffer.samples == 20 * SR and buffer.held <= 300 * SR // 1000 + 512 * 2


def test_without_vad_the_item_in_progress_starts_with_the_first_audio_after_a_commit_or_clear():
    buffer = InputAudioBuffer(SessionConfig(sample_rate=16000, turn_detection=None))
    assert buffer.in_progress is None
    tone = (0.3 * np.sin(np.arange(SR) / 5)).astype(np.float32)
    buffer.append(pcm16(tone[:SR // 2]))
    item_id, start = buffer.in_progress
    assert start == 0 and buffer.speech().item_id == item_id
    buffer.append(pcm16(tone[SR // 2:]))
    assert buffer.in_progress == (item_id, 0)
    (utterance,) = buffer.commit().utterances
    assert utterance.item_id == item_id and buffer.in_progress is None
    buffer.append(pcm16(tone[:SR // 4]))
    assert buffer.in_progress[1] == SR and buffer.in_progress[0] != item_id
    buffer.clear()
    assert buffer.in_progress is None


@pytest.mark.parametrize("since", [0, 1, 3199, 3200, 5000, 16000])
def test_audio_since_is_the_kept_audio_from_a_sample_on(since):
    buffer = InputAudioBuffer(SessionConfig(sample_rate=16000, turn_detection=None))
    tone = (0.3 * np.sin(np.arange(SR) / 5)).astype(np.float32)
    feed(buffer, pcm16(tone))  # appends of 1600 samples
    expected = np.round(tone * 32768).clip(-32768, 32767) / 32768
    np.testing.assert_array_equal(buffer.audio_since(since), expected[since:].astype(np.float32))
