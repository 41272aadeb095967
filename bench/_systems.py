"""The systems ``bench_e2e.py`` compares, each built from the same ``Whisper`` (random weights).

A run exposes ``encode(mel) -> features``, ``decode(mel, n) -> tokens [B, n]`` (greedy, end-of-text
suppressed, prompt = start-of-transcript, English, transcribe, no timestamps), ``step_ms(b)`` (one decode
step alone, where the system can time it, else None), ``build_s`` and ``close()``.
"""
from __future__ import annotations

import time

import torch

from whisper_model.config import ModelDimensions
from whisper_model.io.export import hf_config, to_hf, to_openai
from whisper_model.model import Whisper


def prompt_ids(dims: ModelDimensions) -> dict:
    """Special token ids of this vocabulary and the decoding prompt."""
    eot = 50256 + int(dims.is_multilingual)
    sot = eot + 1
    translate = sot + 1 + dims.num_languages
    ids = dict(eot=eot, sot=sot, en=sot + 1, translate=translate, transcribe=translate + 1,
               no_timestamps=translate + 5)
    # what every system suppresses: end-of-text (so each decodes exactly n tokens) and the special tokens
    # openai-whisper always adds (translate, transcribe, sot, sot_lm, sot_prev, no_speech)
    ids["suppress"] = [eot, translate, translate + 1, sot, translate + 2, translate + 3, translate + 4]
    ids["prompt"] = ([sot, sot + 1, ids["transcribe"], ids["no_timestamps"]] if dims.is_multilingual
                     else [sot, ids["no_timestamps"]])
    return ids


def _state_dict(model: Whisper) -> dict:
    return {k: v.detach() for k, v in model.state_dict().items()}


class SystemRun:
    label = "?"
    build_s = 0.0
    own_weight_bytes = 0  # weights built before the system's memory accounting started

    def encode(self, mel):
        raise NotImplementedError

    def decode(self, mel, n):
        raise NotImplementedError

    def step_ms(self, b):
        return None

    def close(self):
        pass


class OpenAIRun(SystemRun):
    """openai-whisper's ``decode``: model ``.half()``, LayerNorms back to float32 (its own fp16 recipe)."""

    def __init__(self, model: Whisper, *, mode=None, max_batch=1, device="cuda", dtype=torch.float16):
        import whisper
        from whisper.model import ModelDimensions as OADims
        from whisper.model import Whisper as OAWhisper

        if dtype == torch.bfloat16:
            raise ImportError("openai-whisper has no bfloat16 path")
        self.label, self.whisper, self.fp16 = "openai-whisper", whisper, dtype == torch.float16
        self.dims, self.ids = model.dims, prompt_ids(model.dims)
        t0 = time.perf_counter()
        with torch.device(device):
            oa = OAWhisper(OADims(**model.dims.to_dict()))
        oa.load_state_dict(to_openai(model.dims, _state_dict(model))["model_state_dict"])
        if self.fp16:
            oa.half()
            for m in oa.modules():
                if isinstance(m, torch.nn.LayerNorm):
                    m.float()
        self.model = oa.eval()
        torch.cuda.synchronize() if torch.device(device).type == "cuda" else None
        self.build_s = time.perf_counter() - t0

    @torch.no_grad()
    def encode(self, mel):
        return self.model.encoder(mel.half() if self.fp16 else mel)

    @torch.no_grad()
    def decode(self, mel, n):
        opts = self.whisper.DecodingOptions(
            task="transcribe", language="en" if self.dims.is_multilingual else None, temperature=0.0, sample_len=n,
            without_timestamps=True, suppress_tokens=[self.ids["eot"]], suppress_blank=False, fp16=self.fp16)
        results = self.whisper.decode(self.model, mel, opts)
        return _pad([r.tokens for r in results])

    def close(self):
        del self.model


class HFRun(SystemRun):
    """transformers ``generate``; mode "dynamic" (default cache) or "static" (static cache + auto compile)."""

    def __init__(self, model: Whisper, *, mode="dynamic", max_batch=1, device="cuda", dtype=torch.float16):
        import transformers
        from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

        transformers.logging.set_verbosity_error()
        self.label, self.mode, self.dtype = f"hf-{mode}", mode, dtype
        dims, ids = model.dims, prompt_ids(model.dims)
        self.dims, self.ids = dims, ids
        t0 = time.perf_counter()
        cfg = WhisperConfig(**hf_config(dims, dtype))
        with torch.device(device):
            hf = WhisperForConditionalGeneration._from_config(cfg, attn_implementation="sdpa", dtype=dtype)
        missing, unexpected = hf.load_state_dict(to_hf(dims, _state_dict(model)), strict=False)
        if unexpected or set(missing) - {"proj_out.weight"}:
            raise RuntimeError(f"HF weights: missing {missing}, unexpected {unexpected}")
        hf.tie_weights()
        gc = GenerationConfig(
            decoder_start_token_id=ids["sot"], eos_token_id=ids["eot"], pad_token_id=ids["eot"],
            bos_token_id=ids["eot"], max_length=dims.n_text_ctx, suppress_tokens=ids["suppress"],
            begin_suppress_tokens=None, no_timestamps_token_id=ids["no_timestamps"], return_timestamps=False,
            is_multilingual=dims.is_multilingual, lang_to_id={"<|en|>": ids["en"]},
            task_to_id={"transcribe": ids["transcribe"], "translate": ids["translate"]})
        hf.generation_config = gc
        self.model = hf.eval()
        self.version = transformers.__version__
        torch.cuda.synchronize() if torch.device(device).type == "cuda" else None
        self.build_s = time.perf_counter() - t0

    @torch.no_grad()
    def encode(self, mel):
        return self.model.model.encoder(mel.to(self.dtype)).last_hidden_state

    @torch.no_grad()
    def decode(self, mel, n):
        kw = dict(language="en", task="transcribe") if self.dims.is_multilingual else {}
        if self.mode == "static":
            kw["cache_implementation"] = "static"
        seq = self.model.generate(input_features=mel.to(self.dtype), max_new_tokens=n, do_sample=False, num_beams=1,
                                  return_timestamps=False, **kw)
        if not isinstance(seq, torch.Tensor):
            seq = seq["sequences"]
        prompt = torch.tensor(self.ids["prompt"], device=seq.device)
        k = len(prompt)
        if seq.shape[1] >= k and bool((seq[:, :k] == prompt).all()):
            seq = seq[:, k:]
        return seq

    def close(self):
        del self.model


class OursRun(SystemRun):
    """``engine.accelerate``: variant "triton-pdl" / "triton-pdl2" / "triton" (fused kernels; PDL level 1, 2, off)
    or "torch" (plain ops), graphs on; "eager": plain ops, no graphs."""

    def __init__(self, model: Whisper, *, mode="triton-pdl", max_batch=1, device="cuda", dtype=torch.float16):
        from whisper_model.fast.engine import accelerate

        kernels = "torch" if mode in ("torch", "eager") or torch.device(device).type != "cuda" else "triton"
        self.label = f"ours-{mode}"
        self.ids, self.model = prompt_ids(model.dims), model
        self.own_weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        t0 = time.perf_counter()
        pdl = {"triton-pdl": 1, "triton-pdl2": 2}.get(mode, 0)
        self.fast = accelerate(model, max_batch_size=max_batch, kernels=kernels, pdl=pdl, cuda_graphs=mode != "eager")
        self.build_s = time.perf_counter() - t0
        self.positions = torch.arange(model.dims.n_text_ctx, device=device)

    @torch.inference_mode()
    def encode(self, mel):
        return self.fast.encoder(mel)

    def _suppress_mask(self, device) -> torch.Tensor:
        mask = torch.zeros(self.model.dims.n_vocab, dtype=torch.bool, device=device)
        mask[self.ids["suppress"]] = True
        return mask

    @torch.inference_mode()
    def decode(self, mel, n, features=None):
        """``n`` greedy tokens per row of ``mel`` (encoded here, or its encoder states ``features`` given)."""
        dec = self.fast.text_decoder
        suppress = self._suppress_mask(mel.device)
        prompt = torch.tensor(self.ids["prompt"], device=mel.device).expand(mel.shape[0], -1)
        k = prompt.shape[1]
        dec.set_audio(self.fast.encoder(mel) if features is None else features)
        logits = dec.step(prompt, self.positions[:k])[:, -1]
        out = torch.empty(mel.shape[0], n, dtype=torch.long, device=mel.device)
        for i in range(n):
            out[:, i] = logits.masked_fill_(suppress, float("-inf")).argmax(-1)
            if i + 1 < n:
                logits = dec.step(out[:, i: i + 1], self.positions[k + i: k + i + 1])[:, -1]
        return out

    @torch.inference_mode()
    def step_ms(self, b, steps: int = 50):
        if self.positions.device.type != "cuda":
            return None
        dec = self.fast.text_decoder
        tok = torch.zeros(b, 1, dtype=torch.long, device=self.positions.device)
        for i in range(5):
            dec.step(tok, self.positions[10 + i: 11 + i])
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(steps):
            dec.step(tok, self.positions[20 + i: 21 + i])
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / steps

    @torch.inference_mode()
    def breakdown_ms(self, mel, n: int = 50) -> dict:
        """Where a segment's time goes: encoder, cross K/V, prompt pass, n steps with and without selection."""
        dec, dev = self.fast.text_decoder, mel.device
        prompt = torch.tensor(self.ids["prompt"], device=dev).expand(mel.shape[0], -1)
        k = prompt.shape[1]
        tok = torch.zeros(mel.shape[0], 1, dtype=torch.long, device=dev)
        suppress = self._suppress_mask(dev)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(6)]
        events[0].record()
        xa = self.fast.encoder(mel)
        events[1].record()
        dec.set_audio(xa)
        events[2].record()
        dec.step(prompt, self.positions[:k])
        events[3].record()
        for i in range(n):
            dec.step(tok, self.positions[k + i: k + i + 1])
        events[4].record()
        for i in range(n):
            logits = dec.step(tok, self.positions[k + i: k + i + 1])[:, -1]
            tok[:, 0] = logits.masked_fill_(suppress, float("-inf")).argmax(-1)
        events[5].record()
        torch.cuda.synchronize()
        names = ["encoder", "cross_kv", "prompt_pass", "step", "step_and_select"]
        return {name: events[i].elapsed_time(events[i + 1]) / (n if i >= 3 else 1) for i, name in enumerate(names)}

    def close(self):
        del self.fast


def _pad(rows: list[list[int]]) -> torch.Tensor:
    n = max(len(r) for r in rows)
    return torch.tensor([list(r) + [-1] * (n - len(r)) for r in rows], dtype=torch.long)


SYSTEMS = {"openai": OpenAIRun, "hf": HFRun, "ours": OursRun}
