"""A minimal CTranslate2 ``model.bin`` writer for tests (the layout of CTranslate2's ``model_spec.py``
``_serialize``), shared by the weight-loading tests and the loaders' fuzz seeds."""
from __future__ import annotations

import struct

import torch

_CT2_DTYPES = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4, torch.bfloat16: 5}


def ct2_bytes(variables: dict[str, torch.Tensor], aliases=(), spec: str = "WhisperSpec", version: int = 6) -> bytes:
    """A CTranslate2 model.bin (layout of CTranslate2's model_spec.py ``_serialize``)."""
    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [struct.pack("<I", version), string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, t in variables.items():
        data = t.contiguous().numpy().tobytes()
        out += [string(name), struct.pack("<B", t.dim()), struct.pack(f"<{t.dim()}I", *t.shape),
                struct.pack("<BI", _CT2_DTYPES[t.dtype], len(data)), data]
    out.append(struct.pack("<I", len(aliases)))
    out += [string(a) + string(b) for a, b in aliases]
    return b"".join(out)
