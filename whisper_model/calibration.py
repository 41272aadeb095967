"""Calibrated quantized weights (GPTQ, ``trtllm_ext.gptq``) for a Whisper model.

    model = WhisperModel("tiny.en", weight_only_precision="int4", calibration_audio=["a.wav", "b.wav"])
    model.save("tiny_int4.safetensors")   # calibrate once: WhisperModel("tiny_int4.safetensors") reloads it as is

Round to nearest rounds every weight alone; a calibrated model rounds each projection so that its outputs on real
inputs move least. The float model transcribes each 30 s window of the calibration audio (greedy, no timestamps,
in the window's detected language; the last window padded, as decoding pads it), then reads
its own transcript back once through ``InputStatistics``, which gathers every projection's inputs: the encoder's on
the window's 1500 audio states, the decoder's on the start-of-transcript tokens and the transcript. Each projection
of the blocks (the layers weight-only quantization replaces) is then rounded by ``gptq_quantize_weight``.

Use audio like what the model will transcribe (a few minutes is plenty), and not the audio you score it on.
Memory: one K x K float32 sum per projection (about 0.1 GB for base, 8 GB for large-v3), on the model's device.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from trtllm_ext import Linear
from trtllm_ext.backend import TORCH_BACKEND
from trtllm_ext.gptq import InputStatistics, gptq_quantize_weight

from .encoding import Audio
from .errors import OptionError
from .io.audio import N_SAMPLES, load_audio, log_mel_spectrogram, pad_or_trim
from .io.tokenizer import Tokenizer
from .model import Whisper


def calibration_windows(audios: Sequence[Audio]) -> list[np.ndarray]:
    """Each audio's 30 s windows (16 kHz float32 samples, the last one padded); decoded first, so that a bad file
    fails before any model runs. OptionError for an empty or non-sequence ``audios``."""
    if isinstance(audios, (str, bytes)) or not isinstance(audios, Sequence) or not audios:
        raise OptionError(f"calibration_audio must be a non-empty list of audio files or arrays, got {audios!r:.80}")
    windows = []
    for audio in audios:
        samples = load_audio(audio) if isinstance(audio, (str, bytes)) or hasattr(audio, "__fspath__") else audio
        samples = np.asarray(samples.cpu() if isinstance(samples, torch.Tensor) else samples, dtype=np.float32)
        windows += [pad_or_trim(samples[i:i + N_SAMPLES]) for i in range(0, max(len(samples), 1), N_SAMPLES)]
    return windows


def projection_names(model: Whisper) -> list[str]:
    """The module names of the blocks' projections (every Linear-family layer: what weight-only quantization
    replaces; the convolutions and the tied embedding are other layers)."""
    return [name for name, m in model.named_modules() if isinstance(m, Linear)]


def gather_statistics(model, windows: Sequence[np.ndarray]) -> InputStatistics:
    """Run the float ``model`` (a ``pipeline.WhisperModel``) over ``windows``: transcribe each, then read the
    transcript back through an ``InputStatistics`` backend -> the projections' input statistics, by module name."""
    net: Whisper = model.model
    stats = InputStatistics(TORCH_BACKEND, {n: net.get_submodule(n).weight for n in projection_names(net)})
    tok = model.tokenizer
    for samples in windows:
        segments, info = model.transcribe(samples, temperature=0.0, without_timestamps=True)
        text = [t for s in segments for t in s.tokens if t < tok.eot]
        lang = info.language if net.is_multilingual else None
        prompt = Tokenizer(tok.encoding, tok.num_languages, lang, "transcribe" if lang else None)
        ids = list(prompt.sot_sequence_including_notimestamps) + text[:net.dims.n_text_ctx // 2]
        tokens = torch.tensor([ids], device=net.device)
        pos = torch.arange(len(ids), device=net.device)
        mel = log_mel_spectrogram(torch.from_numpy(samples), net.dims.n_mels, device=net.device)[None]
        with torch.inference_mode():
            xa = net.encoder(mel, backend=stats)
            caches = net.decoder.new_caches(1, len(ids))
            net.decoder.set_audio_on(caches, xa, backend=stats)
            net.decoder.compute(stats, caches, tokens, pos, caches.begin_step("calibration", tokens, pos))
    return stats


def calibrated_state_dict(model, windows: Sequence[np.ndarray], precision: str, group_size: Optional[int],
                          scale_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The float ``model``'s (a ``pipeline.WhisperModel``) weights with every projection's float ``weight``
    replaced by GPTQ's ``qweight`` + ``scales`` (scales in ``scale_dtype``, the quantized model's dtype): a
    quantized state dict, loaded as it is."""
    stats = gather_statistics(model, windows)
    state = dict(model.model.state_dict())
    for name in projection_names(model.model):
        w = state.pop(f"{name}.weight")
        state[f"{name}.qweight"], state[f"{name}.scales"] = gptq_quantize_weight(
            w, stats.hessian(name), precision, group_size, scale_dtype=scale_dtype)
    return state


__all__ = ["calibrated_state_dict", "calibration_windows", "gather_statistics", "projection_names"]
