"""Silero VAD's model (package ``silero-vad``) and its speech probabilities, with the state carried from call to call.

    stream = SileroStream()                 # one audio: fed in pieces of any size, 16 kHz mono float
    p = stream.feed(block)                  # the probability of each 32 ms frame this piece completes
    p = stream.feed(last_block, end=True)   # ... and of the unfinished last frame, zero-padded
    speech_probabilities(samples)           # the same for a whole array: one feed(samples, end=True)

The model is Silero VAD's TorchScript file shipped inside the ``silero-vad`` wheel (``load_silero_vad(onnx=False)``:
torch only; neither torchaudio nor onnxruntime is imported, nothing is downloaded). Importing ``silero_vad`` sets
``torch.set_num_threads(1)`` for the whole process; ``vad_model`` puts the caller's setting back.

Silero scores frames of 512 samples (32 ms at 16 kHz), each seen with the last 64 samples of the frame before;
per frame a convolutional encoder (STFT, four convolutions) feeds an LSTM cell whose state runs through the whole
audio. ``SileroStream`` computes what calling the model frame by frame computes (as
``silero_vad.get_speech_timestamps`` does), only faster: the encoder runs on a piece's frames in large batches,
the LSTM as one ``torch.nn.LSTM`` call over the piece's sequence (one thread on CPU: it is a chain of small
products), its state carried to the next piece; it keeps the samples of an unfinished frame and the last 64
samples. One stream serves the offline VAD (``io.speech_stream``: a file read in blocks) and the realtime server
VAD (``realtime.vad_stream``). Pieces of the same audio split otherwise give the same probabilities up to rounding
(matrix products of other sizes; tests/model/test_vad_stream.py bounds it).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import warnings
from typing import Union

import numpy as np
import torch

from trtllm_ext.threads import one_thread

FRAME, CONTEXT = 512, 64  # samples per scored frame at 16 kHz, and samples of the frame before seen with it
ENCODER_BATCH = 4096  # frames per encoder call (~2 s of compute on one core, ~10 MB of features)
LSTM_PIECE = 8192  # frames per cuDNN LSTM call on a GPU (4.4 min of audio)


def vad_available() -> bool:
    """Whether the ``silero-vad`` package is installed (without importing it)."""
    return importlib.util.find_spec("silero_vad") is not None


@functools.lru_cache(maxsize=None)
def vad_model(device: str = "cpu"):
    """Silero VAD's TorchScript model from the installed ``silero-vad`` package (no network), on ``device``,
    in eval mode; torch's thread count is restored after the package's import changes it."""
    threads = torch.get_num_threads()
    try:
        import silero_vad
    except ImportError as e:
        raise ImportError("voice activity detection needs the 'silero-vad' package: pip install silero-vad") from e
    finally:
        torch.set_num_threads(threads)
    with warnings.catch_warnings():  # its importlib.resources.path and torch.jit.load are deprecated, not gone
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated", FutureWarning)  # torch >= 2.15
        model = silero_vad.load_silero_vad(onnx=False)
    return model.to(torch.device(device)).eval()


@functools.lru_cache(maxsize=None)
def lstm_layer(device: str) -> torch.nn.LSTM:
    """The model's LSTM cell as a ``torch.nn.LSTM`` layer (same weights): one call runs a whole sequence."""
    cell = vad_model(device)._model.decoder.rnn
    lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1]).to(cell.weight_ih.device)
    with torch.no_grad():
        for mine, theirs in (("weight_ih_l0", cell.weight_ih), ("weight_hh_l0", cell.weight_hh),
                             ("bias_ih_l0", cell.bias_ih), ("bias_hh_l0", cell.bias_hh)):
            getattr(lstm, mine).copy_(theirs)
    return lstm.eval()


def one_cpu_thread(device: str):
    """torch on one thread inside the block on a CPU (a context manager): the LSTM's small sequential products only
    lose from more (on a loaded machine two threads made a frame 100x slower: 33 ms instead of 0.3 ms)."""
    return one_thread() if torch.device(device).type == "cpu" else contextlib.nullcontext()


class SileroStream:
    """One audio's speech probabilities, frame by frame, its state carried from call to call. ``samples``: samples
    fed; ``scored``: samples in frames scored (the zero padding of a last frame included)."""

    def __init__(self, device: str = "cpu"):
        self.device = str(device)
        self._net = vad_model(self.device)._model
        self._lstm = lstm_layer(self.device)
        self.reset()

    def reset(self) -> None:
        """Forget all audio: a fresh LSTM state, no context, offsets from 0."""
        self._state = None
        self._context = torch.zeros(CONTEXT, device=self.device)
        self._pending = np.zeros(0, np.float32)
        self.scored = 0

    @property
    def samples(self) -> int:
        return self.scored + len(self._pending)

    def feed(self, samples: Union[np.ndarray, torch.Tensor], end: bool = False) -> torch.Tensor:
        """Probabilities [frames] (CPU, float32) of the frames ``samples`` complete; with ``end`` also of the
        unfinished last frame, zero-padded (the audio ends here: nothing more may be fed before ``reset``)."""
        if isinstance(samples, torch.Tensor):
            samples = samples.detach().cpu().numpy()
        audio = np.asarray(samples, np.float32).reshape(-1)
        if len(self._pending):
            audio = np.concatenate([self._pending, audio])
        whole = len(audio) // FRAME * FRAME
        if end and whole < len(audio):
            audio, whole = np.pad(audio, (0, FRAME - len(audio) % FRAME)), whole + FRAME
        self._pending = audio[whole:].copy()
        self.scored += whole
        return self._score(audio[:whole])

    def flush(self) -> torch.Tensor:
        """The end of the audio: the unfinished frame, zero-padded, is scored too."""
        return self.feed(np.zeros(0, np.float32), end=True)

    @torch.no_grad()
    def _score(self, audio: np.ndarray) -> torch.Tensor:
        """Probabilities [n] of whole frames ``audio`` [n * 512], moving the context and the LSTM state on."""
        if not len(audio):
            return torch.zeros(0)
        net = self._net
        audio = torch.cat([self._context, torch.from_numpy(audio).to(self.device)])
        self._context = audio[-CONTEXT:].clone()
        frames = audio.unfold(0, FRAME + CONTEXT, FRAME)  # [n, 576]: each frame after its context
        features = torch.cat([net.encoder(net.stft(block)) for block in frames.split(ENCODER_BATCH)])  # [n, 128, 1]
        sequence = features[:, None, :, 0].contiguous()
        with one_cpu_thread(self.device):
            pieces = []  # cuDNN refuses very long sequences: pieces, the state carried over (the same recurrence)
            for piece in sequence.split(LSTM_PIECE if torch.device(self.device).type != "cpu" else len(sequence)):
                out, self._state = self._lstm(piece, self._state)
                pieces.append(out)
        hidden = torch.cat(pieces)
        return net.decoder.decoder(hidden[:, 0, :, None]).reshape(-1).float().cpu()


def speech_probabilities(samples: Union[np.ndarray, torch.Tensor], device: str = "cpu") -> torch.Tensor:
    """Silero's speech probability [ceil(n / 512)] of each 32 ms frame of 16 kHz mono ``samples`` [n] (the last
    frame zero-padded), equal to calling the model frame by frame from a fresh state."""
    return SileroStream(device).feed(samples, end=True)


__all__ = ["CONTEXT", "FRAME", "SileroStream", "lstm_layer", "one_cpu_thread", "speech_probabilities",
           "vad_available", "vad_model"]
