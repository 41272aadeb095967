"""torch's intra-op threads for the length of a block."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """The process's intra-op threads set to one for the block (restored after it, also on an error): for loops of
    many small sequential ops, where a parallel region per op costs more than it saves."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["one_thread"]
