"""``server.realtime_items.LiveItems``: a session's items as live streams, against a worker that records its calls
(no model): which streams open, what audio they get, when they end or are cancelled, and the server events their
``Committed`` / ``Finished`` / ``Failed`` become."""
from __future__ import annotations

import asyncio

import numpy as np

from _requires import require

require("prometheus_client", "prometheus-client")

from whisper_model.longform import TranscriptionInfo  # noqa: E402
from whisper_model.options import TranscriptionOptions  # noqa: E402
from whisper_model.realtime.config import SessionConfig  # noqa: E402
from whisper_model.realtime.session import RealtimeSession  # noqa: E402
from whisper_model.scheduler import Committed, Failed, Finished  # noqa: E402
from whisper_model.server.metrics import Metrics  # noqa: E402
from whisper_model.server.realtime_items import LiveItems  # noqa: E402

from ._clips import SR, pcm16, speech  # noqa: E402
from ._live_server import append  # noqa: E402
from ._openai import validated_event  # noqa: E402

COMMIT = '{"type": "input_audio_buffer.commit"}'
CLEAR = '{"type": "input_audio_buffer.clear"}'


class RecordingWorker:
    """``add_live`` / ``feed`` / ``end`` / ``cancel`` recorded; ``deliver[id]`` sends a stream's events."""

    def __init__(self):
        self.deliver, self.fed, self.calls, self.kwargs = {}, {}, [], {}

    def add_live(self, deliver, *, options=None, language=None, initial_prompt=None, context=None) -> int:
        stream_id = len(self.deliver)
        self.deliver[stream_id], self.fed[stream_id] = deliver, []
        self.kwargs[stream_id] = dict(options=options, language=language, initial_prompt=initial_prompt)
        self.calls.append(("add_live", stream_id))
        return stream_id

    def feed(self, stream_id, samples):
        self.fed[stream_id].append(np.array(samples))

    def end(self, stream_id):
        self.calls.append(("end", stream_id))

    def cancel(self, stream_id):
        self.calls.append(("cancel", stream_id))

    def audio(self, stream_id) -> np.ndarray:
        return np.concatenate(self.fed[stream_id])


def make(config: SessionConfig):
    worker, sent = RecordingWorker(), []
    items = LiveItems(worker, sent.extend, None, Metrics(2))
    session = RealtimeSession(config)

    def handle(message):
        result = session.handle(message)
        items.sync(session, result.utterances)
        return result

    return worker, sent, items, handle


async def settle():
    """Let the events handed to the loop (``call_soon_threadsafe``) run."""
    for _ in range(3):
        await asyncio.sleep(0)


INFO = TranscriptionInfo(language="en", language_probability=1.0, duration=1.0, all_language_probs=None,
                         options=TranscriptionOptions())


def test_without_turn_detection_an_item_is_one_stream_from_its_first_append_to_its_commit():
    async def run():
        worker, sent, items, handle = make(SessionConfig(sample_rate=16000, turn_detection=None, language="en",
                                                         prompt="Names."))
        tone = (0.3 * np.sin(np.arange(SR) / 7)).astype(np.float32)
        handle(append(pcm16(tone[:SR // 2])))
        assert worker.calls == [("add_live", 0)] and worker.kwargs[0]["language"] == "en"
        assert worker.kwargs[0]["initial_prompt"] == "Names."
        handle(append(pcm16(tone[SR // 2:])))
        (utterance,) = handle(COMMIT).utterances
        assert worker.calls == [("add_live", 0), ("end", 0)]
        assert [len(a) for a in worker.fed[0]] == [SR // 2, SR // 2]  # each append's new audio, once
        np.testing.assert_array_equal(worker.audio(0), utterance.samples)
        for text in (" Hello", " world."):
            worker.deliver[0](Committed(0, text, 1.0))
        worker.deliver[0](Finished(0, INFO))
        await settle()
        events = [validated_event(e) for e in sent]
        assert [e.delta for e in events[:2]] == ["Hello", " world."]
        assert events[2].transcript == "Hello world." and events[2].usage.seconds == 1.0
        assert {e.item_id for e in events} == {utterance.item_id}
        await asyncio.wait_for(items.drained(), 1)

    asyncio.run(run())


def test_a_clear_cancels_the_item_at_once_and_its_late_events_are_dropped():
    async def run():
        worker, sent, items, handle = make(SessionConfig(sample_rate=16000, turn_detection=None))
        handle(append(pcm16(np.full(SR // 4, 0.1, np.float32))))
        handle(CLEAR)
        assert worker.calls == [("add_live", 0), ("cancel", 0)] and items.open is None
        worker.deliver[0](Committed(0, " late", 0.25))
        await settle()
        assert sent == []
        handle(append(pcm16(np.full(SR // 4, 0.1, np.float32))))  # the next item: a new stream
        assert worker.calls[-1] == ("add_live", 1)
        items.cancel_all()  # the client went away
        assert worker.calls[-1] == ("cancel", 1)

    asyncio.run(run())


def test_a_failed_stream_sends_its_items_failed_event_and_the_session_goes_on():
    async def run():
        worker, sent, items, handle = make(SessionConfig(sample_rate=16000, turn_detection=None))
        handle(append(pcm16(np.full(SR // 4, 0.1, np.float32))))
        worker.deliver[0](Failed(0, RuntimeError("out of rows")))
        await settle()
        (failed,) = [validated_event(e) for e in sent]
        assert failed.type == "conversation.item.input_audio_transcription.failed"
        assert failed.item_id == items.open.item_id and failed.error.code == "transcription_failed"
        assert "out of rows" in failed.error.message and failed.error.type == "server_error"
        handle(append(pcm16(np.full(SR // 4, 0.1, np.float32))))  # the failed item's audio goes nowhere
        handle(COMMIT)
        assert worker.calls == [("add_live", 0)] and len(worker.fed[0]) == 1
        handle(append(pcm16(np.full(SR // 4, 0.1, np.float32))))
        assert worker.calls[-1] == ("add_live", 1)

    asyncio.run(run())


def test_with_server_vad_each_utterance_is_fed_exactly_its_audio():
    async def run():
        worker, sent, items, handle = make(SessionConfig(sample_rate=16000))
        audio = speech()
        pcm = pcm16(np.concatenate([np.zeros(SR, np.float32), audio[:3 * SR], np.zeros(2 * SR, np.float32),
                                    audio[3 * SR:], np.zeros(SR, np.float32)]))
        utterances = []
        for k in range(0, len(pcm), 3200):  # 100 ms appends
            utterances += handle(append(pcm[k:k + 3200])).utterances
        assert len(utterances) == 2
        assert worker.calls == [("add_live", 0), ("end", 0), ("add_live", 1), ("end", 1)]
        for stream_id, utterance in enumerate(utterances):
            np.testing.assert_array_equal(worker.audio(stream_id), utterance.samples)
            assert len(worker.fed[stream_id]) > 5  # fed while the speech went on, not at its end only

    asyncio.run(run())
