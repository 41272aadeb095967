"""Server VAD over appended audio: Silero's probabilities with the state carried across calls of any size equal the
offline whole-audio computation (io.vad); a clip split by 2 s of silence is two utterances; silence is none."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from whisper_model.io.vad import FRAME, speech_probabilities
from whisper_model.realtime.config import TurnDetection
from whisper_model.realtime.vad_stream import SpeechStarted, SpeechStopped, StreamingVad

from ._clips import SR, speech

# LSTMCell frame by frame (the stream) vs one torch.nn.LSTM call (io.vad): the same recurrence, rounded apart;
# measured at most 6.6e-7 on the shared clips
TOLERANCE = 2e-6


def stream(vad: StreamingVad, audio: np.ndarray, sizes) -> tuple[torch.Tensor, list]:
    probabilities, events, at, k = [], [], 0, 0
    while at < len(audio):
        n = sizes[k % len(sizes)]
        update = vad.feed(audio[at:at + n])
        probabilities.append(update.probabilities)
        events += update.events
        at, k = at + n, k + 1
    update = vad.flush()
    return torch.cat(probabilities + [update.probabilities]), events + update.events


@pytest.mark.parametrize("sizes", [[len(speech())], [FRAME], [1], [100, 700, 3], [1000], [4801, 17]],
                         ids=lambda s: "+".join(map(str, s)))
def test_probabilities_equal_the_offline_computation(sizes):
    audio = speech()[:SR * 3] if sizes == [1] else speech()  # one sample a call: 3 s is enough
    offline = speech_probabilities(audio)
    streamed, _ = stream(StreamingVad(), audio, sizes)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max().item() < TOLERANCE
    assert offline.max() > 0.9 and offline.min() < 0.1  # the clip has speech and gaps: the comparison means it


def test_a_fed_frame_is_scored_once_and_the_rest_waits():
    vad = StreamingVad()
    assert vad.feed(np.zeros(FRAME - 1, np.float32)).probabilities.shape == (0,)
    assert vad.feed(np.zeros(FRAME + 2, np.float32)).probabilities.shape == (2,)
    assert (vad.samples, vad.scored) == (2 * FRAME + 1, 2 * FRAME)
    assert vad.flush().probabilities.shape == (1,) and vad.flush().probabilities.shape == (0,)


def test_two_halves_split_by_silence_are_two_utterances():
    audio = speech()
    half = len(audio) // 2
    gap, tail = 2 * SR, SR
    joined = np.concatenate([audio[:half], np.zeros(gap, np.float32), audio[half:], np.zeros(tail, np.float32)])
    settings = TurnDetection()  # 0.5 / 300 ms / 500 ms
    _, events = stream(StreamingVad(settings), joined, [480, 1234])
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped] * 2, events
    first, stop, second, end = events
    assert first.detected < SR // 2 and first.sample == max(0, first.detected - 300 * SR // 1000)
    assert half - SR // 2 < stop.speech_end <= half + FRAME  # the first half's speech ends at the cut
    assert stop.sample - stop.speech_end == -(-500 * SR // 1000 // FRAME) * FRAME  # 500 ms, in whole frames
    assert half + gap <= second.detected < half + gap + SR // 2
    assert second.sample == second.detected - 300 * SR // 1000
    assert len(joined) - tail - SR // 2 < end.speech_end <= len(joined) - tail + FRAME
    _, streamed_whole = stream(StreamingVad(settings), joined, [len(joined)])
    assert streamed_whole == events  # the events do not depend on how the audio came


def test_silence_and_noise_are_no_speech():
    rng = np.random.default_rng(0)
    for audio in (np.zeros(5 * SR, np.float32), (rng.standard_normal(5 * SR) * 1e-3).astype(np.float32)):
        probabilities, events = stream(StreamingVad(), audio, [512 * 3 + 5])
        assert events == [] and probabilities.max() < 0.5


def test_the_settings_move_the_turns():
    audio = np.concatenate([speech(), np.zeros(2 * SR, np.float32)])
    _, default = stream(StreamingVad(), audio, [1600])
    _, patient = stream(StreamingVad(TurnDetection(prefix_padding_ms=0, silence_duration_ms=1500)), audio, [1600])
    assert isinstance(patient[0], SpeechStarted) and patient[0].sample == patient[0].detected
    assert isinstance(patient[-1], SpeechStopped) and isinstance(default[-1], SpeechStopped)
    assert patient[-1].speech_end == default[-1].speech_end
    frames = [-(-ms * SR // 1000 // FRAME) for ms in (1500, 500)]  # the silence waited for, in whole frames
    assert patient[-1].sample - default[-1].sample == (frames[0] - frames[1]) * FRAME


def test_reset_starts_over():
    audio = speech()[:2 * SR]
    vad = StreamingVad()
    first, _ = stream(vad, audio, [700])
    vad.reset()
    assert (vad.samples, vad.scored, vad.in_speech) == (0, 0, False)
    again, _ = stream(vad, audio, [700])
    assert torch.equal(first, again)


def test_the_padding_does_not_reach_back_over_the_previous_utterance():
    audio = speech()
    half = len(audio) // 2
    joined = np.concatenate([audio[:half], np.zeros(SR * 6 // 10, np.float32), audio[half:]])
    _, events = stream(StreamingVad(), joined, [2000])
    assert [type(e) for e in events[:3]] == [SpeechStarted, SpeechStopped, SpeechStarted], events
    stop, second = events[1:3]
    assert second.detected - 300 * SR // 1000 < stop.sample == second.sample  # 300 ms back would overlap
