"""Audio that grows: samples kept as the blocks they came in and joined when read (``io.live_mel``, ``live``).

    held = SampleBlocks()
    held.append(block)        # float32 [n], any number of times: O(1)
    held.samples()            # [size]: the blocks joined (once; the join is kept)
    held.keep_from(n)         # forget the first n samples
"""
from __future__ import annotations

import numpy as np


class SampleBlocks:
    """Float32 samples appended block by block; ``size``: how many are held."""

    def __init__(self):
        self._blocks: list[np.ndarray] = []
        self.size = 0

    def append(self, block: np.ndarray) -> None:
        if block.size:
            self._blocks.append(block)
            self.size += block.size

    def samples(self) -> np.ndarray:
        if len(self._blocks) != 1:
            self._blocks = [np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.float32)]
        return self._blocks[0]

    def keep_from(self, n: int) -> None:
        """Forget the first ``n`` samples (the rest is copied: the join's memory goes)."""
        kept = self.samples()[n:].copy()
        self._blocks, self.size = [kept], kept.size


__all__ = ["SampleBlocks"]
