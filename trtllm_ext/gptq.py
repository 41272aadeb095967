"""Calibrated weight-only quantization (GPTQ: Frantar et al., 2022), in the stored format of ``quantization``.

Round to nearest treats every weight alone. GPTQ rounds a layer's input columns one at a time and hands each
column's rounding error on to the columns not yet rounded, weighted by the inverse of the layer's input Hessian
``H = X^T X / rows`` (X: the inputs the layer saw on calibration data), so that the layer's outputs on such inputs
move as little as possible. The result is ``(qweight, scales)`` exactly as ``quantize_weight`` makes them (int8 per
output channel; int4 full-range groups, each scale taken from its group's weights as they stand when the group is
reached), so every path that reads quantized weights reads these. With a diagonal H nothing is handed on and the
result is ``quantize_weight``'s, bit for bit.

    stats = InputStatistics(TORCH_BACKEND, {"blocks.0.mlp.fc": layer.fc.weight, ...})
    model(..., backend=stats)                    # the float model on calibration inputs, through the recorder
    qweight, scales = gptq_quantize_weight(weight, stats.hessian("blocks.0.mlp.fc"), "int4", 128)

``InputStatistics`` is an op backend (``backend.OpBackend``) that runs every op on the backend it wraps and adds
the inputs of the named weights' products (after the LayerNorm a product fuses) to float32 sums of ``X^T X``;
memory: one ``K x K`` float32 sum per named weight.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F

from .backend import OpBackend
from .quantization import (
    DEFAULT_GROUP_SIZE,
    QuantMode,
    check_float,
    as_quant_mode,
    check_group,
    pack_int4,
    round_weight,
    weight_scales,
)
from .threads import one_thread

DEFAULT_DAMP = 0.1  # of H's mean diagonal, added to its diagonal (few calibration rows make H near singular)


class InputStatistics:
    """Wraps ``inner`` (an ``OpBackend``); ``weights``: name -> the float weight tensor a layer hands the backend.
    Each ``linear`` over one of them adds its input rows (LayerNorm'd where the product fuses one) to that name's
    ``X^T X``."""

    def __init__(self, inner: OpBackend, weights: Mapping[str, torch.Tensor]):
        self.inner = inner
        self._names = {w.data_ptr(): name for name, w in weights.items()}
        self._sums: dict[str, torch.Tensor] = {}
        self._rows: dict[str, int] = {}

    def linear(self, x, weight, bias=None, *, ln=None, gelu=False, residual=None, out_dtype=None):
        name = self._names.get(weight.data_ptr()) if isinstance(weight, torch.Tensor) else None
        if name is not None:
            rows = x.reshape(-1, x.shape[-1]).float()
            if ln is not None:
                rows = F.layer_norm(rows, rows.shape[-1:], ln.weight.float(), ln.bias.float(), ln.eps)
            total = self._sums.get(name)
            self._sums[name] = rows.T @ rows if total is None else total.addmm_(rows.T, rows)
            self._rows[name] = self._rows.get(name, 0) + rows.shape[0]
        return self.inner.linear(x, weight, bias, ln=ln, gelu=gelu, residual=residual, out_dtype=out_dtype)

    def add_layer_norm(self, y, x, ln):
        return self.inner.add_layer_norm(y, x, ln)

    def embed(self, tokens, pos, emb, pemb):
        return self.inner.embed(tokens, pos, emb, pemb)

    def attention(self, qkv, b, heads, causal=False):
        return self.inner.attention(qkv, b, heads, causal)

    def self_attention(self, qkv, k_cache, v_cache, pos, t):
        return self.inner.self_attention(qkv, k_cache, v_cache, pos, t)

    def cross_attention(self, q, k, v, t, group):
        return self.inner.cross_attention(q, k, v, t, group)

    def rows(self, name: str) -> int:
        """How many input rows ``name``'s weight has seen (0: none)."""
        return self._rows.get(name, 0)

    def hessian(self, name: str) -> torch.Tensor:
        """``X^T X / rows`` [K, K] float64 (CPU) of the inputs ``name``'s weight has seen; KeyError if none."""
        if name not in self._sums:
            raise KeyError(f"InputStatistics: the weight {name!r} saw no inputs (was the model run through this "
                           f"backend?)")
        return self._sums[name].double().cpu() / self._rows[name]


def _inverse_factor(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor U of (H + damp * mean(diag H) * I)^-1 (U^T U = H^-1), in H's dtype (float32: the
    factor only weighs the errors handed on); unseen inputs (zero diagonal) get a unit diagonal, so their columns
    are rounded alone."""
    h = h.clone()
    diag = h.diagonal()
    dead = diag <= 0
    h[dead, :] = 0
    h[:, dead] = 0
    diag[dead] = 1
    diag += damp * diag.mean()
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)


def gptq_quantize_weight(w: torch.Tensor, hessian: torch.Tensor, mode, group_size: Optional[int] = DEFAULT_GROUP_SIZE,
                         *, damp: float = DEFAULT_DAMP, scale_dtype: Optional[torch.dtype] = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Float ``w [N, K]`` and its input Hessian ``hessian [K, K]`` -> ``(qweight, scales)`` in ``quantize_weight``'s
    format, shapes and dtypes. ``damp`` (> 0): the share of H's mean diagonal added to its diagonal. ValueError on
    a bad ``w`` or ``group_size`` (as ``quantize_weight``), a Hessian that is not a finite [K, K] float tensor, or a
    ``damp`` that is not positive."""
    mode = as_quant_mode(mode)
    check_float("gptq_quantize_weight", "w [N, K]", w, ndim=2)
    n, k = w.shape
    check_float("gptq_quantize_weight", "hessian [K, K]", hessian, ndim=2)
    if tuple(hessian.shape) != (k, k):
        raise ValueError(f"gptq_quantize_weight: hessian must have shape ({k}, {k}) for a weight of shape "
                         f"{tuple(w.shape)}, got {tuple(hessian.shape)}")
    if not (torch.isfinite(w).all() and torch.isfinite(hessian).all()):
        raise ValueError(f"gptq_quantize_weight: the weight {tuple(w.shape)} or its hessian has non-finite values")
    if not isinstance(damp, (int, float)) or isinstance(damp, bool) or not damp > 0:
        raise ValueError(f"gptq_quantize_weight: damp must be a positive number, got {damp!r}")
    group = check_group(k, mode, group_size, "gptq_quantize_weight") or k
    scale_dtype = scale_dtype or w.dtype
    # one thread: the column loop is thousands of small ops (tiny.en's 44 projections on a busy 2-core machine:
    # 194 s on two threads, 7 s on one)
    with one_thread():
        q, scales = _rounded(w, hessian, mode, group, float(damp), scale_dtype)
    q, scales = q.to(w.device), scales.to(w.device)
    if mode is QuantMode.INT8:
        return q, scales.reshape(n)
    return pack_int4(q), scales


def _rounded(w: torch.Tensor, hessian: torch.Tensor, mode: QuantMode, group: int, damp: float,
             scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ's column loop (CPU): (int8 levels [N, K], scales [N, K // group])."""
    n, k = w.shape
    u = _inverse_factor(hessian.detach().to("cpu", torch.float32), damp).double()
    weights = w.detach().to("cpu", torch.float64).clone()
    q = torch.empty(n, k, dtype=torch.int8)
    scales = torch.empty(n, k // group, dtype=scale_dtype)
    step = group if mode is QuantMode.INT4 else min(k, 128)  # columns whose errors are handed on together
    for b0 in range(0, k, step):
        block, ub = weights[:, b0:b0 + step], u[b0:b0 + step, b0:b0 + step]
        errors = torch.empty(n, step, dtype=torch.float64)
        for i in range(step):
            c = b0 + i
            if c % group == 0:  # a group's scale from its weights as they stand now (int4: this whole block)
                scales[:, c // group] = weight_scales(weights[:, c:c + group], mode, scale_dtype)[:, 0]
                s = scales[:, c // group].to(torch.float64)
            q[:, c] = level = round_weight(block[:, i], s, mode)
            err = torch.sub(block[:, i], level * s, out=errors[:, i]).div_(ub[i, i])
            block[:, i + 1:].addr_(err, ub[i, i + 1:], alpha=-1)
        weights[:, b0 + step:].addmm_(errors, u[b0:b0 + step, b0 + step:], alpha=-1)
    return q, scales


__all__ = ["DEFAULT_DAMP", "InputStatistics", "gptq_quantize_weight"]
