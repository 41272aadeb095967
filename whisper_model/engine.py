"""The fast path: the same modules and weights as ``model.py``, run through static caches, captured CUDA
graphs and fused Triton kernels (``trtllm_ext.kernels``) where the device has them.

    model = Whisper.from_state_dict(dims, sd, dtype=torch.float16, device="cuda")
    fast = accelerate(model, max_batch_size=16, max_beam_width=5)
    xa = fast.encoder(mel)                              # mel [b, n_mels, 3000] -> [b, 1500, d]
    fast.decoder.compute_cross_kv(xa)                   # cross K/V of every layer, once per audio
    logits = fast.decoder(tokens, input_pos)            # tokens [B, t], positions [t] or [B, t] -> [B, t, n_vocab]

``fast`` has ``Whisper``'s interface (``dims``, ``dtype``, ``device``, ``embed_audio``, ``logits``...) and
its decoder the cached-mode interface of ``WhisperDecoder`` (``setup_caches``, ``compute_cross_kv``,
``forward(tokens, input_pos)``, ``reorder_caches``, ``reset_caches``), so decoding code runs on either.

Decoder rows: ``compute_cross_kv(xa [A, ...])`` keeps one cross row per audio; a step with B = A*G rows
reads audio ``i // G`` for row i (G > 1: beams share their audio's K/V, read once per step).

Each (row bucket, t <= 8, G) step is captured once as a CUDA graph (buckets: powers of two up to the cache
rows); a call copies its tokens/positions into the graph's static inputs, replays, and returns a copy of
the logits: no host synchronisation. Longer prompts (conditioning on previous text) run the same step
eagerly. The encoder is captured once per batch size. ``reorder_caches`` gathers the self caches of all layers in two
kernels (it reads the current length, one sync, as beam search syncs per step anyway). Without CUDA
(or with ``kernels="torch"``) the same step runs through ``trtllm_ext.kernels.reference``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from trtllm_ext import KVCache, check_input_pos
from trtllm_ext import kernels as _kernels
from trtllm_ext.kernels import reference

from .config import ModelDimensions
from .model import Whisper

ENGINE_FILE = "engine.json"


def _ln(norm) -> tuple[torch.Tensor, torch.Tensor, float]:
    return norm.weight, norm.bias, norm.eps


def _triton_ops():
    from trtllm_ext.kernels import ops

    return ops


class FastEncoder:
    """mel [b, n_mels, 2*n_audio_ctx] -> [b, n_audio_ctx, d]: residual adds fused into the LayerNorms, and on
    CUDA the whole pass captured once per batch size as a graph (the short kernels of a small batch would
    otherwise wait on the host)."""

    def __init__(self, encoder, ops, *, cuda_graphs: bool = True):
        self.module, self.ops = encoder, ops
        self.cuda_graphs = cuda_graphs and ops is not reference
        self._graphs: dict[int, tuple] = {}

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        enc = self.module
        if self.ops is reference:
            return enc(mel)
        expected = (enc.n_mels, 2 * enc.n_ctx)
        if mel.dim() != 3 or tuple(mel.shape[1:]) != expected:
            raise ValueError(f"encoder: mel must have shape [batch, {expected[0]}, {expected[1]}], got "
                             f"{tuple(mel.shape)}")
        if not self.cuda_graphs:
            return self._forward(mel.to(enc.dtype))
        b = mel.shape[0]
        if b not in self._graphs:
            self._graphs[b] = self._capture(mel.to(enc.dtype))
        graph, static_mel, out = self._graphs[b]
        static_mel.copy_(mel)
        graph.replay()
        return out.clone()

    def _capture(self, mel: torch.Tensor) -> tuple:
        with torch.inference_mode(False):  # static inputs stay writable whatever mode the caller is in
            static_mel = mel.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._forward(static_mel)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self._forward(static_mel)
        return graph, static_mel, out

    def _forward(self, mel: torch.Tensor) -> torch.Tensor:
        enc, ops = self.module, self.ops
        x = F.gelu(enc.conv1(mel))
        x = F.gelu(enc.conv2(x))
        b, d, n = x.shape
        res = torch.empty(b, n, d, device=x.device, dtype=x.dtype)  # the residual stream, row-major
        torch.add(x.transpose(1, 2), enc.positional_embedding, out=res)
        x = res.view(b * n, d)
        blocks = list(enc.blocks)
        h = ops.layer_norm(x, *_ln(blocks[0].attn_ln))
        for i, blk in enumerate(blocks):
            attn = blk.attn
            qkv = F.linear(h, attn.qkv.weight, attn.qkv.bias).view(b, n, 3, attn.local_heads, attn.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b * n, d)
            y = F.linear(o, attn.dense.weight, attn.dense.bias)
            h = ops.layer_norm(y, *_ln(blk.mlp_ln), residual=x, x_out=x)
            y = F.linear(F.gelu(F.linear(h, blk.mlp.fc.weight, blk.mlp.fc.bias)), blk.mlp.proj.weight,
                         blk.mlp.proj.bias)
            nxt = blocks[i + 1].attn_ln if i + 1 < len(blocks) else enc.ln_post
            h = ops.layer_norm(y, *_ln(nxt), residual=x, x_out=x)
        return h.view(b, n, d)


class _Step:
    """Static buffers of one decode-step shape (rows, t, group) and, on CUDA, its captured graph."""

    def __init__(self, dec: "FastDecoder", rows: int, t: int, group: int):
        with torch.inference_mode(False):  # writable later whatever mode the caller is in
            self._allocate(dec, rows, t, group)

    def _allocate(self, dec: "FastDecoder", rows: int, t: int, group: int) -> None:
        d, dev, dt = dec.d, dec.device, dec.dtype
        m = rows * t
        self.rows, self.t, self.group = rows, t, group
        self.tokens = torch.zeros(rows, t, dtype=torch.long, device=dev)
        self.pos = torch.arange(t, dtype=torch.long, device=dev).repeat(rows, 1)  # [rows, t], per row
        self.x = torch.empty(m, d, dtype=dt, device=dev)
        self.qkv = torch.empty(m, 3 * d, dtype=dt, device=dev)
        self.o = torch.empty(m, d, dtype=dt, device=dev)
        self.q = torch.empty(m, d, dtype=dt, device=dev)
        self.h = torch.empty(m, 4 * d, dtype=dt, device=dev)
        self.logits = torch.empty(m, dec.n_vocab, dtype=torch.float32, device=dev)
        self.ws: dict = {}
        self.graph: torch.cuda.CUDAGraph | None = None


class FastDecoder:
    """Cached-mode ``WhisperDecoder`` interface over preallocated caches and captured decode steps."""

    def __init__(self, decoder, ops, *, rows: int, cuda_graphs: bool, pdl: int, cross_chunk: int = 128):
        self.module, self.ops, self.pdl, self.cross_chunk = decoder, ops, pdl, cross_chunk
        self.blocks = decoder.blocks
        self.n_ctx, self.n_audio_ctx, self.dtype = decoder.n_ctx, decoder.n_audio_ctx, decoder.dtype
        self.device = decoder.positional_embedding.device
        self.d = decoder.positional_embedding.shape[1]
        self.n_vocab = decoder.token_embedding.weight.shape[0]
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self.max_graph_tokens = 8  # steps of more new tokens than this are not captured
        self.rows = 0
        self.kv_rows = 0
        self._steps: dict[tuple[int, int, int], _Step] = {}
        self._pool = None
        self._last_pos: torch.Tensor | None = None
        self.setup_caches(rows)

    # -- caches -------------------------------------------------------------------------------------------
    def setup_caches(self, max_batch: int, *, max_len: int | None = None, device=None) -> None:
        """Make room for ``max_batch`` rows (no-op when the caches already hold that many)."""
        if max_len is not None and not 0 < max_len <= self.n_ctx:
            raise ValueError(f"max_len must be in [1, {self.n_ctx}], got {max_len}")
        if max_batch <= self.rows:
            return
        with torch.inference_mode(False):  # the caches are written in place later, whatever mode the caller is in
            self._allocate(max_batch)

    def _allocate(self, max_batch: int) -> None:
        attn = self.blocks[0].attn
        h, hd, n_layer = attn.local_heads, attn.head_dim, len(self.blocks)
        kw = dict(dtype=self.dtype, device=self.device)
        self._steps.clear()
        for blk in self.blocks:  # free the old storage before allocating the new
            blk.attn.kv_cache = blk.cross_attn.kv_cache = None
        self._self_kv = self._cross_kv = None
        self._self_kv = torch.zeros(n_layer, 2, max_batch, h, self.n_ctx, hd, **kw)
        self._cross_kv = torch.zeros(n_layer, max_batch, self.n_audio_ctx, 2, h, hd, **kw)
        for i, blk in enumerate(self.blocks):
            blk.attn.kv_cache = self._view_cache(self._self_kv[i, 0], self._self_kv[i, 1])
            ck = self._cross_kv[i].permute(2, 0, 3, 1, 4)  # [2, rows, heads, S, hd] views of [rows, S, 2, h, hd]
            blk.cross_attn.kv_cache = self._view_cache(ck[0], ck[1])
            blk.cross_attn.kv_rows = blk.cross_attn.kv_len = 0
        self.rows, self.kv_rows = max_batch, 0

    @staticmethod
    def _view_cache(k: torch.Tensor, v: torch.Tensor) -> KVCache:
        cache = KVCache(1, 1, 1, 1, dtype=k.dtype, device=k.device)
        cache._buffers["k"], cache._buffers["v"] = k, v
        return cache

    @property
    def has_caches(self) -> bool:
        return self.rows > 0

    @torch.no_grad()
    def compute_cross_kv(self, xa: torch.Tensor) -> None:
        """xa [A, n_audio_ctx, d] -> every layer's cross K/V (one GEMM per layer, written in place)."""
        a, s, d = xa.shape
        if a > self.rows or s != self.n_audio_ctx:
            raise ValueError(f"compute_cross_kv: xa {tuple(xa.shape)} does not fit {self.rows} rows x "
                             f"{self.n_audio_ctx} positions")
        x2 = xa.to(self.dtype).reshape(a * s, d)
        for i, blk in enumerate(self.blocks):
            kv = blk.cross_attn.kv
            torch.addmm(kv.bias, x2, kv.weight.t(), out=self._cross_kv[i, :a].view(a * s, 2 * self.d))
            blk.cross_attn.kv_rows, blk.cross_attn.kv_len = a, s
        self.kv_rows = a

    @torch.no_grad()
    def reorder_caches(self, index: torch.Tensor) -> None:
        """Beam search: self-cache row i of every layer becomes old row index[i] (positions written so far)."""
        index = torch.as_tensor(index, device=self.device).long()
        n = index.shape[0]
        length = self.n_ctx if self._last_pos is None else int(self._last_pos.max()) + 1
        kv = self._self_kv
        kv[:, :, :n, :, :length] = kv[:, :, index, :, :length]

    def reset_caches(self) -> None:
        self._self_kv.zero_()
        self._cross_kv.zero_()
        self.kv_rows, self._last_pos = 0, None
        for blk in self.blocks:
            blk.cross_attn.kv_rows = blk.cross_attn.kv_len = 0

    # -- decode step --------------------------------------------------------------------------------------
    def _linear(self, m: int):
        ops = self.ops
        return ops.fused_linear if ops is reference or m <= ops.MAX_M else reference.fused_linear

    def _run(self, st: _Step) -> None:
        """One decoder pass over the step's static buffers (captured as a graph on CUDA)."""
        ops, pdl, dec = self.ops, self.pdl, self.module
        lin = self._linear(st.x.shape[0])
        x = ops.embed(st.tokens, st.pos, dec.token_embedding.weight, dec.positional_embedding, out=st.x, pdl=pdl)
        for i, blk in enumerate(self.blocks):
            a, c, mlp = blk.attn, blk.cross_attn, blk.mlp
            lin(x, a.qkv.weight, a.qkv.bias, ln=_ln(blk.attn_ln), out=st.qkv, pdl=pdl)
            ops.self_attention(st.qkv, self._self_kv[i, 0], self._self_kv[i, 1], st.pos, st.t, out=st.o, pdl=pdl)
            lin(st.o, a.dense.weight, a.dense.bias, residual=x, out=x, pdl=pdl, workspace=st.ws)
            lin(x, c.query.weight, c.query.bias, ln=_ln(blk.cross_attn_ln), out=st.q, pdl=pdl)
            ops.cross_attention(st.q, c.kv_cache.k, c.kv_cache.v, st.t, st.group, out=st.o, pdl=pdl,
                                chunk=self.cross_chunk, workspace=st.ws)
            lin(st.o, c.dense.weight, c.dense.bias, residual=x, out=x, pdl=pdl, workspace=st.ws)
            lin(x, mlp.fc.weight, mlp.fc.bias, ln=_ln(blk.mlp_ln), gelu=True, out=st.h, pdl=pdl)
            lin(st.h, mlp.proj.weight, mlp.proj.bias, residual=x, out=x, pdl=pdl, workspace=st.ws)
        lin(x, dec.token_embedding.weight, None, ln=_ln(dec.ln), out=st.logits, pdl=pdl)

    def _bucket(self, b: int) -> int:
        p = 1
        while p < b:
            p *= 2
        return min(p, self.rows)

    def _step(self, rows: int, t: int, group: int) -> _Step:
        key = (rows, t, group)
        st = self._steps.get(key)
        if st is None:
            st = self._steps[key] = _Step(self, rows, t, group)
        return st

    def _capture(self, st: _Step) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # compiles the kernels; the step is idempotent (same K/V, same positions)
                self._run(st)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        st.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(st.graph, pool=self._pool):
            self._run(st)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None,
                xa: torch.Tensor | None = None) -> torch.Tensor:
        if input_pos is None:  # reference mode: the eager module
            return self.module(tokens, xa=xa)
        if tokens.dim() != 2:
            raise ValueError(f"decoder: tokens must have shape [batch, length], got {tuple(tokens.shape)}")
        b, t = tokens.shape
        if self.kv_rows == 0:
            raise RuntimeError("decoder: no cross K/V; call compute_cross_kv(xa) first")
        if b > self.rows:
            raise ValueError(f"decoder: batch {b} exceeds the {self.rows} cache rows; call setup_caches({b})")
        check_input_pos("decoder", input_pos, b, t)
        group = b // self.kv_rows if b % self.kv_rows == 0 else 1
        if group == 1 and b > self.kv_rows:
            raise ValueError(f"decoder: {b} rows do not divide among {self.kv_rows} audio rows")
        # graphs for one-token steps and short prompts; a long prompt (conditioning on previous text) runs once,
        # eagerly, in buffers of its own
        use_graph = self.cuda_graphs and t <= self.max_graph_tokens
        rows = self._bucket(b) if use_graph else b
        st = self._step(rows, t, group) if t <= self.max_graph_tokens else _Step(self, rows, t, group)
        st.tokens[:b].copy_(tokens, non_blocking=True)
        if input_pos.dim() == 1:
            st.pos.copy_(input_pos.expand(st.rows, t), non_blocking=True)
        else:
            st.pos[:b].copy_(input_pos, non_blocking=True)
        self._last_pos = st.pos
        if not use_graph:
            self._run(st)
        elif st.graph is None:
            self._capture(st)
            st.graph.replay()
        else:
            st.graph.replay()
        return st.logits[: b * t].view(b, t, -1).clone()

    __call__ = forward


class AcceleratedWhisper:
    """``Whisper``'s interface on the fast path; ``model`` keeps the eager reference modules."""

    def __init__(self, model: Whisper, *, max_batch_size: int, max_beam_width: int, kernels: str,
                 cuda_graphs: bool, pdl: int, cross_chunk: int = 128):
        self.model, self.dims = model, model.dims
        self.max_batch_size, self.max_beam_width = max_batch_size, max_beam_width
        self.kernels = kernels
        ops = _triton_ops() if kernels == "triton" else reference
        self.encoder = FastEncoder(model.encoder, ops, cuda_graphs=cuda_graphs)
        self.decoder = FastDecoder(model.decoder, ops, rows=max_batch_size * max_beam_width,
                                   cuda_graphs=cuda_graphs, pdl=pdl, cross_chunk=cross_chunk)

    dtype = property(lambda self: self.model.dtype)
    device = property(lambda self: self.model.device)
    is_multilingual = property(lambda self: self.dims.is_multilingual)
    num_languages = property(lambda self: self.dims.num_languages)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return self.encoder(mel)

    def logits(self, tokens: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        return self.model.logits(tokens, audio_features)


def accelerate(model: Whisper, max_batch_size: int = 1, max_beam_width: int = 1, *, kernels: str = "auto",
               cuda_graphs: bool = True, pdl: int | None = None, cross_chunk: int = 128) -> AcceleratedWhisper:
    """Wrap ``model`` (weights shared, not copied) in the fast path.

    ``kernels``: "triton" (fused kernels; needs CUDA + Triton), "torch" (plain PyTorch ops), or "auto".
    ``pdl``: programmatic dependent launch between the Triton kernels (default: level 1 on Hopper and newer;
    2 also lets each kernel's successor launch at once, see ``trtllm_ext.kernels.ops``; 0 off).
    """
    if kernels == "auto":
        kernels = "triton" if _kernels.available(model.device) else "torch"
    if kernels not in ("triton", "torch"):
        raise ValueError(f"kernels must be 'triton', 'torch' or 'auto', got {kernels!r}")
    if kernels == "triton" and not _kernels.available(model.device):
        raise RuntimeError("kernels='triton' needs a CUDA model and an importable triton")
    if pdl is None:
        pdl = kernels == "triton" and torch.cuda.get_device_capability(model.device)[0] >= 9
    return AcceleratedWhisper(model.eval(), max_batch_size=max_batch_size, max_beam_width=max_beam_width,
                              kernels=kernels, cuda_graphs=cuda_graphs, pdl=int(pdl) if kernels == "triton" else 0,
                              cross_chunk=cross_chunk)


def load_engine(engine_dir, device="cuda", **overrides) -> AcceleratedWhisper:
    """Load what ``python -m whisper_model.build`` wrote and wrap it with its recorded settings."""
    from .weights import load_checkpoint

    engine_dir = Path(engine_dir)
    meta = json.loads((engine_dir / ENGINE_FILE).read_text(encoding="utf-8"))
    dtype = getattr(torch, meta["dtype"])
    dims, sd = load_checkpoint(engine_dir, dtype=dtype)
    if dims != ModelDimensions.from_dict(meta["dims"]):
        raise ValueError(f"{engine_dir}: weights do not match the dims recorded in {ENGINE_FILE}")
    model = Whisper.from_state_dict(dims, sd, dtype=dtype, device=device)
    settings = dict(max_batch_size=meta["max_batch_size"], max_beam_width=meta["max_beam_width"],
                    cross_chunk=meta.get("cross_chunk", 128))
    settings.update(overrides)
    return accelerate(model, **settings)
