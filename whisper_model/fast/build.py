"""Engine directories for the fast GPU path (the command line is ``python -m whisper_model.build``).

    meta = build("tiny.en", "engine_dir", dtype="float16", max_batch_size=16, max_beam_width=5)

Writes the converted weights (Hugging Face layout: ``model.safetensors`` + ``config.json``, through
``io.export.save_hf``), the checkpoint's vocabulary files if it has any, and ``engine.json`` (dtype,
max_batch_size, max_beam_width, model dims, decode settings). With a CUDA device (unless ``warm=False``) it
then loads the engine once and captures the decode steps of every batch bucket, which compiles the Triton
kernels into Triton's on-disk cache so a later ``engine.load_engine(ENGINE_DIR)`` starts without compiling.
``random_weights=NAME`` builds random weights of a published model's shapes (benchmarks) instead of loading
``model``.

``weight_only_precision="int8"`` / ``"int4"`` (``weight_only_group_size``) quantizes the weights once, here: the
directory then holds ``quantized.safetensors`` (``io.quantized``: qweight + scales, read back as stored) and the
Hugging Face ``config.json`` / ``generation_config.json`` beside it in place of the float ``model.safetensors``;
``engine.json`` records ``quantization`` (with ``int8_kv_cache``: the decoder's caches in int8). A saved quantized
checkpoint (``WhisperModel.save``, e.g. calibrated weights) as ``model`` is built as stored, in its own precision."""
from __future__ import annotations

import json
import time

import torch

from ..config import dims_for
from ..io.alignment_heads import read_alignment_heads
from ..io.export import atomic_dir, hf_config, save_hf
from ..io.quantized import (QUANTIZED_FILE, find_quantized, load_quantized, quantized_vocab_dir, recorded_quantization,
                            save_quantized)
from ..io.vocab import checkpoint_vocab_dir, copy_vocab_files
from ..io.weights import load_checkpoint
from ..model import Quantization, Whisper, check_quantization
from .engine import ENGINE_FILE, load_engine

FORMAT_VERSION = 1


def random_whisper(name: str, *, dtype: torch.dtype = torch.float16, device=None, seed: int = 0,
                   **quantization) -> Whisper:
    """A model of ``name``'s shapes with random weights (``init_random_``); key biases zero, as Whisper's;
    ``quantization``: ``Whisper``'s options (quantized layers get random integers and scales)."""
    from trtllm_ext import init_random_

    dims = dims_for(name)
    model = init_random_(Whisper(dims, dtype=dtype, device=device, **quantization), seed=seed)
    with torch.no_grad():
        for blk in model.encoder.blocks:
            blk.attn.qkv.bias[dims.n_audio_state: 2 * dims.n_audio_state].zero_()
        for blk in model.decoder.blocks:
            blk.attn.qkv.bias[dims.n_text_state: 2 * dims.n_text_state].zero_()
            blk.cross_attn.kv.bias[: dims.n_text_state].zero_()
    return model.eval()


def build(model: str | None, output_dir, *, dtype: str = "float16", max_batch_size: int = 1, max_beam_width: int = 1,
          random_weights: str | None = None, seed: int = 0, warm: bool = True, overwrite: bool = False,
          weight_only_precision: str | None = None, weight_only_group_size: int | None = None,
          int8_kv_cache: bool = False, source_note: str | None = None) -> dict:
    """``source_note``: what ``engine.json`` records as the weights' source (default: ``model``, or the random
    weights' name and seed)."""
    t0 = time.perf_counter()
    torch_dtype = getattr(torch, dtype)
    quant = check_quantization(None, weight_only_precision, weight_only_group_size, int8_kv_cache)
    if not random_weights and not model:
        raise ValueError("pass --model NAME_OR_PATH or --random_weights NAME")
    saved, loaded = None if random_weights else find_quantized(model), None
    if saved is not None:  # a saved checkpoint (WhisperModel.save): built as stored, in its own precision
        dims, sd, recorded, heads = load_quantized(saved)
        precision, group = recorded_quantization(model, recorded, weight_only_precision, weight_only_group_size)
        quant = check_quantization(None, precision, group, int8_kv_cache)
        loaded = (dims, sd, heads)
    if quant.weight_only_precision:
        out, dims, source = _write_quantized(model, output_dir, torch_dtype, quant, random_weights, seed, overwrite,
                                             loaded)
    else:
        out, dims, source = _write_float(model, output_dir, torch_dtype, random_weights, seed, overwrite, loaded)
    if random_weights:
        vocab = None
    else:
        vocab = checkpoint_vocab_dir(model) if saved is None else quantized_vocab_dir(saved, dims)
    if vocab is not None:  # the checkpoint's own vocabulary travels along
        copy_vocab_files(vocab, out)
    meta = dict(format_version=FORMAT_VERSION, dtype=dtype, max_batch_size=max_batch_size,
                max_beam_width=max_beam_width, dims=dims.to_dict(), source=source_note or source,
                weights=QUANTIZED_FILE if quant.weight_only_precision else "model.safetensors",
                quantization=quant.to_dict(), torch=torch.__version__)
    (out / ENGINE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    meta["convert_s"] = time.perf_counter() - t0
    if warm and torch.cuda.is_available():
        t1 = time.perf_counter()
        engine = load_engine(out, "cuda")
        meta["load_s"] = time.perf_counter() - t1
        meta["warmup_s"] = engine.warm_up(max_batch_size * max_beam_width)
    meta["build_s"] = time.perf_counter() - t0
    return meta


def _checkpoint(model, loaded, dtype=None):
    """(dims, state dict, alignment heads) of ``model``: a saved checkpoint's as loaded, else the float
    checkpoint's (in ``dtype``, if given)."""
    if loaded is not None:
        return loaded
    dims, sd = load_checkpoint(model) if dtype is None else load_checkpoint(model, dtype=dtype)
    return dims, sd, read_alignment_heads(model, dims)


def _write_float(model, output_dir, torch_dtype, random_weights, seed, overwrite, loaded=None):
    """The float weights in the Hugging Face layout (``loaded``: a saved float checkpoint's ``(dims, state dict,
    heads)``): (directory, dims, source)."""
    if random_weights:
        m = random_whisper(random_weights, dtype=torch_dtype, seed=seed)
        dims, sd, heads, source = m.dims, m.state_dict(), None, f"random:{random_weights}:seed={seed}"
    else:
        (dims, sd, heads), source = _checkpoint(model, loaded, torch_dtype), str(model)
    return save_hf(dims, sd, output_dir, dtype=torch_dtype, overwrite=overwrite, alignment_heads=heads), dims, source


def _write_quantized(model, output_dir, torch_dtype, quant: Quantization, random_weights, seed, overwrite,
                     loaded=None):
    """The weights quantized once (from the checkpoint's own precision; ``loaded``: a saved quantized checkpoint's
    ``(dims, state dict, heads)``, taken as stored) into ``QUANTIZED_FILE``, with the Hugging Face config files
    beside it: (directory, dims, source)."""
    kw = dict(weight_only_precision=quant.weight_only_precision, weight_only_group_size=quant.group_size)
    if random_weights:
        m = random_whisper(random_weights, dtype=torch_dtype, seed=seed, **kw)
        source = f"random:{random_weights}:seed={seed}"
    else:
        dims, sd, heads = _checkpoint(model, loaded)
        m = Whisper.from_state_dict(dims, sd, dtype=torch_dtype, **kw)
        m.alignment_heads = heads
        source = str(model)

    def write(tmp):
        save_quantized(tmp / QUANTIZED_FILE, m.dims, m.state_dict(), quant.to_dict(), m.alignment_heads)
        (tmp / "config.json").write_text(json.dumps(hf_config(m.dims, torch_dtype), indent=2) + "\n", "utf-8")
        if m.alignment_heads:
            heads = {"alignment_heads": [list(map(int, p)) for p in m.alignment_heads]}
            (tmp / "generation_config.json").write_text(json.dumps(heads, indent=2) + "\n", "utf-8")

    return atomic_dir(output_dir, overwrite, write), m.dims, source
