"""Weight-loading contract shared by every layer.

Every layer declares its parameters with fixed shapes at construction (filled with NaN, so a parameter that
was never loaded poisons the output instead of passing silently) and loads them through ``load_weights``:

* sources may be torch tensors or numpy arrays, contiguous or not (transposed views, slices, strides);
* every value is validated (known name, floating dtype, exact shape) before anything is written, so a bad
  mapping leaves the layer untouched;
* values are *copied* into storage the layer owns: the caller may free or overwrite its buffer afterwards;
* ``layout`` says how Linear-family weights are held by the caller: ``"out_in"`` (``[out, in]``, the
  stored layout, i.e. transB) or ``"in_out"`` (the caller holds ``W^T``).

``torch.nn.Module.load_state_dict`` works too; it copies into the same owned storage.
"""
from __future__ import annotations

from typing import Mapping, Union

import numpy as np
import torch
from torch import nn

ArrayLike = Union[torch.Tensor, np.ndarray]
LAYOUTS = ("out_in", "in_out")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def declare(*shape: int, dtype: torch.dtype, device=None) -> nn.Parameter:
    """A parameter of a declared shape, NaN until loaded; inference only (no grad)."""
    if any(int(s) <= 0 for s in shape):
        raise ValueError(f"parameter shape must be positive, got {tuple(shape)}")
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"parameter dtype must be floating point, got {dtype}")
    return nn.Parameter(torch.full(shape, float("nan"), dtype=dtype, device=device), requires_grad=False)


def to_tensor(name: str, value: ArrayLike) -> torch.Tensor:
    """Wrap ``value`` as a CPU/GPU tensor without assuming it is contiguous; floating dtypes only."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f" or value.dtype.itemsize > 8:
            raise ValueError(f"weight {name!r}: dtype {value.dtype} is not floating point")
        # a copy: numpy views with negative strides cannot be wrapped, and we never alias caller memory
        value = torch.from_numpy(np.array(value, copy=True))
    elif not isinstance(value, torch.Tensor):
        raise ValueError(f"weight {name!r}: expected a torch.Tensor or numpy.ndarray, got {type(value).__name__}")
    if value.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"weight {name!r}: dtype {value.dtype} is not floating point")
    return value


class Module(nn.Module):
    """Base class: ``load_weights`` plus the hook Linear-family layers use to honour ``layout``."""

    def _transform_weight(self, local_name: str, value: torch.Tensor, layout: str) -> torch.Tensor:
        """Map a caller-held value to the stored layout; the Linear family overrides this."""
        return value

    def _random_values(self, local_name: str, noise: torch.Tensor) -> torch.Tensor:
        """What ``init_random_`` writes into a parameter, given N(0, std) noise; norms shift around 1."""
        return noise

    def load_weights(self, weights: Mapping[str, ArrayLike], *, layout: str = "out_in", strict: bool = True) -> None:
        """Copy ``weights`` (names as in ``state_dict()``) into this layer's own storage.

        Raises ValueError naming the parameter on an unknown or (with ``strict``) missing name, a
        non-floating dtype, or a shape mismatch; nothing is written unless every value is valid.
        """
        staged = self.stage_weights(weights, layout=layout, strict=strict)
        with torch.no_grad():
            for target, tensor in staged:
                target.copy_(tensor)  # copy_ handles any strides and casts to the declared dtype

    def stage_weights(self, weights: Mapping[str, ArrayLike], *, layout: str = "out_in",
                      strict: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Check ``weights`` as ``load_weights`` does: the (target, value) pairs it writes. Submodules with a
        loading contract of their own (an override of ``stage_weights``, e.g. quantized layers) check the names
        under their prefix themselves."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        own, rest = self._own_loaders(), {}
        parts: dict[str, dict] = {prefix: {} for prefix in own}
        for name, value in weights.items():
            prefix = next((p for p in own if name.startswith(p + ".")), None)
            (rest if prefix is None else parts[prefix])[name if prefix is None else name[len(prefix) + 1:]] = value
        staged = []
        for prefix, layer in own.items():
            if parts[prefix] or strict:
                try:
                    staged += layer.stage_weights(parts[prefix], layout=layout, strict=strict)
                except ValueError as e:
                    raise ValueError(f"{type(self).__name__}: {prefix}: {e}") from None
        targets = {n: p for n, p in self.named_parameters() if not _under(n, own)}
        targets.update((n, b) for n, b in self.named_buffers() if self._is_persistent(n) and not _under(n, own))
        return staged + self._stage_plain(rest, targets, layout, strict)

    def _own_loaders(self) -> dict[str, "Module"]:
        """The outermost submodules (by prefix) that override ``stage_weights``."""
        found: dict[str, Module] = {}
        for name, sub in self.named_modules():
            if name and isinstance(sub, Module) and type(sub).stage_weights is not Module.stage_weights \
                    and not _under(name, found):
                found[name] = sub
        return found

    def _stage_plain(self, weights: Mapping[str, ArrayLike], targets: dict, layout: str, strict: bool) -> list:
        unknown = sorted(set(weights) - set(targets))
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown weight names {unknown}; expected {sorted(targets)}")
        missing = sorted(set(targets) - set(weights))
        if strict and missing:
            raise ValueError(f"{type(self).__name__}: missing weights {missing}")
        staged = []
        for name, value in weights.items():
            owner, local = self._owner(name)
            tensor = owner._transform_weight(local, to_tensor(name, value), layout)
            target = targets[name]
            if tuple(tensor.shape) != tuple(target.shape):
                raise ValueError(
                    f"{type(self).__name__}: weight {name!r} has shape {tuple(tensor.shape)}, "
                    f"expected {tuple(target.shape)} (layout={layout!r})"
                )
            if _shares_memory(tensor, targets.values()):
                tensor = tensor.clone()  # e.g. a layer's own weight, transposed: copy before overwriting
            staged.append((target, tensor))
        return staged

    def _owner(self, name: str) -> tuple["Module", str]:
        path, _, local = name.rpartition(".")
        owner = self.get_submodule(path) if path else self
        return (owner if isinstance(owner, Module) else self), local

    def _is_persistent(self, name: str) -> bool:
        path, _, local = name.rpartition(".")
        owner = self.get_submodule(path) if path else self
        return local not in owner._non_persistent_buffers_set


def _under(name: str, prefixes) -> bool:
    return any(name.startswith(p + ".") for p in prefixes)


def _shares_memory(tensor: torch.Tensor, targets) -> bool:
    ptr = tensor.untyped_storage().data_ptr()
    return any(t.untyped_storage().data_ptr() == ptr for t in targets)


def check_input(layer: str, x: torch.Tensor, *, ndim: int | None, last: int | None, dtype: torch.dtype) -> None:
    """ValueError naming the layer when ``x`` has the wrong rank (None: any), last dimension or dtype."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{layer}: expected a torch.Tensor input, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{layer}: expected a {ndim}-D input, got shape {tuple(x.shape)}")
    if last is not None and x.shape[-1] != last:
        raise ValueError(f"{layer}: expected last dimension {last}, got shape {tuple(x.shape)}")
    if x.dtype != dtype:
        raise ValueError(f"{layer}: input dtype {x.dtype} does not match the layer's dtype {dtype}")


def positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@torch.no_grad()
def init_random_(module: nn.Module, *, seed: int = 0, std: float = 0.02) -> nn.Module:
    """Fill every parameter with random values (benchmarks, tests); each layer decides its own law."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            values = torch.randn(p.shape, generator=gen) * std
            if isinstance(sub, Module):
                values = sub._random_values(name, values)
            p.copy_(values)
    return module
