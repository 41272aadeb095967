"""The fast path: the same modules, weights and forward as ``model/whisper.py`` (``WhisperEncoder.forward``,
``WhisperDecoder.compute``), run on the fused Triton kernels of ``trtllm_ext.kernels`` through ``KernelBackend``,
with static caches and captured CUDA graphs.

    model = Whisper.from_state_dict(dims, sd, dtype=torch.float16, device="cuda")
    fast = accelerate(model, max_batch_size=16, max_beam_width=5)
    xa = fast.encoder(mel)                              # mel [b, n_mels, 3000] -> [b, 1500, d]
    dec = fast.text_decoder                             # the decoding seam (decode.protocol.TextDecoder)
    dec.set_audio(xa)                                   # cross K/V of every layer, once per audio
    logits = dec.step(tokens, positions)                # tokens [B, t], positions [t] or [B, t] -> [B, t, n_vocab]

``fast`` has ``Whisper``'s interface for decoding (``dims``, ``dtype``, ``device``, ``embed_audio``,
``text_decoder``), so decoding code runs on either.

Decoder rows: ``set_audio(xa [A, ...])`` keeps one cross row per audio; a step with B = A*G rows reads audio
``i // G`` for row i (G > 1: beams share their audio's K/V, read once per step).

Each (row bucket, t <= 8, G) step is captured once as a CUDA graph (buckets: powers of two up to the cache
rows); a call copies its tokens/positions into the graph's static inputs, replays, and returns a copy of
the logits: no host synchronisation. Longer prompts (conditioning on previous text) run the same step
eagerly. The encoder is captured once per batch size up to 8 (larger batches run eagerly); the word-alignment pass
once per shape (``FastDecoder.align``). ``reorder`` gathers the self caches of all layers in two kernels (it reads
the current length, one sync, as beam search syncs per step anyway). Without CUDA (or with ``kernels="torch"``) the
same forward runs on ``trtllm_ext.kernels.reference``.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Optional

import torch

from trtllm_ext import KernelBackend
from trtllm_ext import kernels as _kernels
from trtllm_ext.kernels import reference

from ..config import ModelDimensions
from ..errors import OptionError
from ..io.quantized import QUANTIZED_FILE
from ..model import Quantization, Whisper
from ..model.caches import DecoderCaches

ENGINE_FILE = "engine.json"
ALIGN_WIDTH = 16  # the alignment pass's tokens are padded to a multiple of this: its graphs' widths
MAX_ALIGN_GRAPHS = 32  # alignment shapes (audio rows, width, heads) beyond this many run eagerly
MAX_ALIGN_BYTES = 2**30  # as do shapes once the graphs' kept outputs (the heads' scores) would take more in all,
# or whose logits alone would


def _triton_ops():
    from trtllm_ext.kernels import ops

    return ops


_CAPTURE_STREAMS: dict[int, torch.cuda.Stream] = {}
_CAPTURE_LOCK = threading.RLock()  # one warm-up + capture at a time: they share the stream


def capture_stream() -> torch.cuda.Stream:
    """The one side stream (per device) on which every graph of this module is warmed up and captured. cuBLAS
    keeps a workspace for each stream it has run on (32 MiB on Hopper) for the life of the process, so a fresh
    stream per capture (the encoder's, a many-row prompt's) would each hold one more."""
    device = torch.cuda.current_device()
    if device not in _CAPTURE_STREAMS:
        _CAPTURE_STREAMS[device] = torch.cuda.Stream()
    return _CAPTURE_STREAMS[device]


def _warm_then_capture(run, pool=None) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Run ``run()`` twice on ``capture_stream()`` (compiles the kernels; the runs must be idempotent), then
    capture it there: ``(graph, output)``; replaying the graph rewrites ``output``. Engines of other threads wait
    (one capture stream: another thread's warm-up launched onto it mid-capture would land in this graph)."""
    with _CAPTURE_LOCK:
        side = capture_stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool, stream=side):
            out = run()
    return graph, out


class FastEncoder:
    """mel [b, n_mels, 2*n_audio_ctx] -> [b, n_audio_ctx, d]: ``WhisperEncoder.forward`` on the kernel backend
    (residual adds fused into the LayerNorms), and on CUDA the whole pass captured once per batch size up to
    ``MAX_GRAPH_BATCH`` as a graph (the short kernels of a small batch would otherwise wait on the host). Larger
    batches run eagerly: their kernels are long enough to hide the launches, and a graph per batch size there
    would cost a capture (three passes) at every new size and hold memory for each."""

    MAX_GRAPH_BATCH = 8

    def __init__(self, encoder, backend: KernelBackend, *, cuda_graphs: bool = True):
        self.module, self.backend = encoder, backend
        self.cuda_graphs = cuda_graphs and backend.kernels is not reference
        self._graphs: dict[int, tuple] = {}

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        enc = self.module
        expected = (enc.n_mels, 2 * enc.n_ctx)
        if mel.dim() != 3 or tuple(mel.shape[1:]) != expected:
            raise ValueError(f"encoder: mel must have shape [batch, {expected[0]}, {expected[1]}], got "
                             f"{tuple(mel.shape)}")
        b = mel.shape[0]
        if not self.cuda_graphs or b > self.MAX_GRAPH_BATCH:
            return enc(mel.to(enc.dtype), self.backend)
        if b not in self._graphs:
            with torch.inference_mode(False):  # static inputs stay writable whatever mode the caller is in
                static_mel = mel.to(enc.dtype).clone()
            self._graphs[b] = (*_warm_then_capture(lambda: enc(static_mel, self.backend)), static_mel)
        graph, out, static_mel = self._graphs[b]
        static_mel.copy_(mel)
        graph.replay()
        return out.clone()


class _Step:
    """Static inputs of one decode-step shape (rows, t, group), its op backend (with the kernels' workspace) and, on
    CUDA, its captured graph and output."""

    def __init__(self, dec: "FastDecoder", rows: int, t: int, group: int):
        self.rows, self.t, self.group = rows, t, group
        with torch.inference_mode(False):  # writable later whatever mode the caller is in
            self.tokens = torch.zeros(rows, t, dtype=torch.long, device=dec.device)
            self.pos = torch.arange(t, dtype=torch.long, device=dec.device).repeat(rows, 1)  # [rows, t], per row
        self.backend = KernelBackend(dec.kernels, pdl=dec.pdl, cross_chunk=dec.cross_chunk)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None  # [rows * t, n_vocab], the graph's output


class _AlignPass:
    """Static tokens [a, width] of one alignment shape, its op backend and, once captured, its graph and outputs
    (probs [a, width - 1], scores [a, heads, width, n_audio_ctx])."""

    def __init__(self, dec: "FastDecoder", a: int, width: int, kept: int):
        self.kept = kept  # bytes of the scores the graph keeps
        with torch.inference_mode(False):
            self.tokens = torch.zeros(a, width, dtype=torch.long, device=dec.device)
        self.backend = KernelBackend(dec.kernels, pdl=dec.pdl, cross_chunk=dec.cross_chunk)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: tuple[torch.Tensor, torch.Tensor] | None = None


class FastDecoder:
    """The decoding seam (``decode.protocol.TextDecoder``) on the fast path: ``WhisperDecoder.compute`` over
    caches this object owns, each (row bucket, t <= 8, group) step captured once as a CUDA graph, and the
    word-alignment pass once per (audio rows, width, heads)."""

    def __init__(self, decoder, kernels, *, rows: int, cuda_graphs: bool, pdl: int, cross_chunk: int = 128):
        self.module, self.kernels, self.pdl, self.cross_chunk = decoder, kernels, pdl, cross_chunk
        self.n_ctx, self.dtype = decoder.n_ctx, decoder.dtype
        self.device = decoder.positional_embedding.device
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self.max_graph_tokens = 8  # steps of more new tokens than this are not captured
        self._steps: dict[tuple[int, int, int], _Step] = {}
        self._aligns: dict[tuple, _AlignPass] = {}
        self._pool = None
        self.caches: DecoderCaches | None = None
        self.reserve(rows)

    @property
    def rows(self) -> int:
        return self.caches.rows

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` rows (no-op when the caches already hold that many; else new caches, new graphs)."""
        if self.caches is not None and rows <= self.caches.rows:
            return
        self._steps.clear()
        self._aligns.clear()
        self._pool = None  # the old graphs' pool goes with them: a capture into it after they are gone fails
        self.caches = None  # free the old storage before allocating the new
        self.caches = self.module.new_caches(rows)

    def set_audio(self, features: torch.Tensor) -> None:
        """features [A, n_audio_ctx, d] -> every layer's cross K/V (one GEMM per layer, written in place), on the
        kernel module: a quantized projection's weight dequantized in one pass in the activations' dtype."""
        self.module.set_audio_on(self.caches, features, KernelBackend(self.kernels))

    def reuse_audio(self, features: torch.Tensor) -> bool:
        return self.caches.recall_audio(features)

    def reorder(self, index: torch.Tensor) -> None:
        self.caches.reorder(index)

    @torch.no_grad()
    def align(self, tokens: torch.Tensor, heads, vocab_limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The word-alignment pass (``TextDecoder.align``): the same forward on the kernels. On CUDA it is captured
        once per (audio rows, width, heads): the tokens [a, t] are padded to ``width``, the next multiple of
        ``ALIGN_WIDTH``, by repeating each row's last token after it (the causal self-attention keeps the padding
        from the real positions' outputs, which are returned); shapes past ``MAX_ALIGN_GRAPHS`` or
        ``MAX_ALIGN_BYTES`` run eagerly."""
        tokens = tokens.to(self.device)
        a, t = tokens.shape
        width = min(-(-t // ALIGN_WIDTH) * ALIGN_WIDTH, self.n_ctx)
        key = (a, width, tuple(map(tuple, heads)), vocab_limit)
        ap = self._aligns.get(key)
        if ap is None:
            kept = a * len(heads) * width * self.module.n_audio_ctx * 4  # the scores, float32
            if self._align_capturable(a, width, kept):
                ap = self._aligns[key] = _AlignPass(self, a, width, kept)
        if ap is None:
            backend = KernelBackend(self.kernels, pdl=self.pdl, cross_chunk=self.cross_chunk)
            return self.module.align_on(backend, self.caches, tokens, heads, vocab_limit)
        ap.tokens[:, :t].copy_(tokens)
        ap.tokens[:, t:].copy_(tokens[:, -1:].expand(a, width - t))
        if ap.graph is None:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            run = lambda: self.module.align_on(ap.backend, self.caches, ap.tokens, heads, vocab_limit)  # noqa: E731
            ap.graph, ap.out = _warm_then_capture(run, self._pool)
        ap.graph.replay()
        probs, scores = ap.out
        return probs[:, : t - 1].clone(), scores[:, :, :t].clone()  # the pool's memory is the next graph's

    def _align_capturable(self, a: int, width: int, kept: int) -> bool:
        logits = a * width * self.module.token_embedding.num_embeddings * 4
        held = sum(ap.kept for ap in self._aligns.values())
        return (self.cuda_graphs and len(self._aligns) < MAX_ALIGN_GRAPHS
                and max(logits, held + kept) <= MAX_ALIGN_BYTES)

    def release(self) -> None:
        self.caches.release()

    def bucket(self, b: int) -> int:
        """The captured rows a step of ``b`` rows runs in: the next power of two, at most the caches' rows."""
        p = 1
        while p < b:
            p *= 2
        return min(p, self.rows)

    def _run(self, st: _Step) -> torch.Tensor:
        return self.module.compute(st.backend, self.caches, st.tokens, st.pos, st.group)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor,
             keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tokens [b, t] at positions ([t] or [b, t]) -> logits [b, t, n_vocab] (float32, a copy); ``keep`` [b, k]:
        those columns only, [b, k, n_vocab] (taken from the full projection: on the GPU it costs little)."""
        group = self.caches.begin_step("decoder", tokens, positions)
        b, t = tokens.shape
        # graphs for one-token steps and short prompts; a long prompt (conditioning on previous text) runs once,
        # eagerly, in buffers of its own
        use_graph = self.cuda_graphs and t <= self.max_graph_tokens
        key = (self.bucket(b) if use_graph else b, t, group)
        st = self._steps.get(key) or _Step(self, *key)
        if t <= self.max_graph_tokens:
            self._steps[key] = st
        st.tokens[:b].copy_(tokens, non_blocking=True)
        if positions.dim() == 1:
            st.pos.copy_(positions.expand(st.rows, t), non_blocking=True)
        else:
            st.pos[:b].copy_(positions, non_blocking=True)
        if not use_graph:
            st.logits = self._run(st)
        elif st.graph is None:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            st.graph, st.logits = _warm_then_capture(lambda: self._run(st), self._pool)
            st.graph.replay()
        else:
            st.graph.replay()
        logits = st.logits[: b * t].view(b, t, -1)
        if keep is None:
            return logits.clone()
        return logits[torch.arange(b, device=logits.device)[:, None], keep.to(logits.device)]


class AcceleratedWhisper:
    """``Whisper``'s interface on the fast path; ``model`` keeps the eager modules (the weights, shared)."""

    def __init__(self, model: Whisper, *, rows: int, kernels, cuda_graphs: bool, pdl: int, cross_chunk: int = 128):
        self.model, self.dims = model, model.dims
        self.encoder = FastEncoder(model.encoder, KernelBackend(kernels), cuda_graphs=cuda_graphs)
        self.text_decoder = FastDecoder(model.decoder, kernels, rows=rows, cuda_graphs=cuda_graphs, pdl=pdl,
                                        cross_chunk=cross_chunk)

    dtype = property(lambda self: self.model.dtype)
    alignment_heads = property(lambda self: self.model.alignment_heads)
    device = property(lambda self: self.model.device)
    is_multilingual = property(lambda self: self.dims.is_multilingual)
    num_languages = property(lambda self: self.dims.num_languages)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return self.encoder(mel)

    @torch.no_grad()
    def warm_up(self, max_rows: Optional[int] = None, prompt_lens: tuple[int, ...] = (4,)) -> float:
        """Capture what a long-lived server would otherwise capture while serving: the decode steps of every row
        bucket up to ``max_rows`` (default: the decoder's rows; one-token steps and prompts of ``prompt_lens``
        tokens) and the encoder's graphs (batches 1 .. ``FastEncoder.MAX_GRAPH_BATCH``, up to ``max_rows``);
        seconds taken."""
        t0 = time.perf_counter()
        dec, dims = self.text_decoder, self.dims
        max_rows = max_rows or dec.rows
        xa = torch.zeros(1, dims.n_audio_ctx, dims.n_audio_state, device=self.device, dtype=self.dtype)
        longest = max(prompt_lens)
        for rows in sorted({dec.bucket(b) for b in range(1, max_rows + 1)}):
            dec.set_audio(xa.expand(rows, -1, -1))
            tokens = torch.zeros(rows, longest + 1, dtype=torch.long, device=self.device)
            for t in sorted(set(prompt_lens)):
                dec.step(tokens[:, :t], torch.arange(t, device=self.device))
            dec.step(tokens[:, :1], torch.tensor([longest], device=self.device))
        mel = torch.zeros(1, dims.n_mels, 2 * dims.n_audio_ctx, device=self.device)
        for b in range(1, min(max_rows, FastEncoder.MAX_GRAPH_BATCH) + 1):
            self.encoder(mel.expand(b, -1, -1))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dec.release()
        return time.perf_counter() - t0


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
    return AcceleratedWhisper(model.eval(), rows=max_batch_size * max_beam_width,
                              kernels=_triton_ops() if kernels == "triton" else reference, cuda_graphs=cuda_graphs,
                              pdl=int(pdl) if kernels == "triton" else 0, cross_chunk=cross_chunk)


def _engine_weights(engine_dir: Path, meta: dict, dtype: torch.dtype, quant: Quantization):
    """(dims, state dict) of an engine directory: its float Hugging Face weights, or its quantized file."""
    from ..io.quantized import load_quantized
    from ..io.weights import load_checkpoint

    if quant.weight_only_precision is None:
        return load_checkpoint(engine_dir, dtype=dtype)
    dims, sd, recorded, _ = load_quantized(engine_dir / meta.get("weights", QUANTIZED_FILE))
    if recorded.get("weight_only_precision") != quant.weight_only_precision:
        raise ValueError(f"{engine_dir}: the weights hold {recorded.get('weight_only_precision')}, {ENGINE_FILE} "
                         f"records {quant.weight_only_precision}")
    return dims, sd


def load_engine(engine_dir, device="cuda", **overrides) -> AcceleratedWhisper:
    """Load what ``python -m whisper_model.build`` wrote and wrap it with its recorded settings; quantized
    weights (``quantization`` in ``engine.json``) are read as stored, not quantized again. ``int8_kv_cache``
    overrides the recorded cache format; ``weight_only_precision``, when given, must be the recorded one."""
    from ..io.alignment_heads import read_alignment_heads

    engine_dir = Path(engine_dir)
    meta = json.loads((engine_dir / ENGINE_FILE).read_text(encoding="utf-8"))
    dtype = getattr(torch, meta["dtype"])
    quant = Quantization.from_dict(meta.get("quantization"))
    asked = overrides.pop("weight_only_precision", None)
    if asked is not None and asked != quant.weight_only_precision:
        raise OptionError(f"weight_only_precision={asked!r}: the engine {engine_dir} was built with "
                          f"{quant.weight_only_precision or 'float'} weights; rebuild it with "
                          f"--weight_only_precision {asked}, or leave the option out")
    dims, sd = _engine_weights(engine_dir, meta, dtype, quant)
    if dims != ModelDimensions.from_dict(meta["dims"]):
        raise ValueError(f"{engine_dir}: weights do not match the dims recorded in {ENGINE_FILE}")
    model = Whisper.from_state_dict(dims, sd, dtype=dtype, device=device,
                                    weight_only_precision=quant.weight_only_precision,
                                    weight_only_group_size=quant.group_size,
                                    int8_kv_cache=overrides.pop("int8_kv_cache", quant.int8_kv_cache))
    model.alignment_heads = read_alignment_heads(engine_dir, dims)
    settings = dict(max_batch_size=meta["max_batch_size"], max_beam_width=meta["max_beam_width"],
                    cross_chunk=meta.get("cross_chunk", 128))
    settings.update(overrides)
    return accelerate(model, **settings)
