"""Where the scheduler stands in its round, read off its events: a round gives one ``Segments`` per row of the
batch, then the ``Finished`` of the rows whose audio is done (``Segments.done`` reached the duration). The worker
uses it to let the requests of the clients just answered join the next round (``ServerConfig.batch_wait_s``):
otherwise, when every request is one window, a closed loop of clients splits into two halves that take turns,
each round half full. A round this cannot follow (e.g. one that failed) only means no wait after it.
"""
from __future__ import annotations

from typing import Hashable, Optional


class Rounds:
    def __init__(self):
        self.rows: set = set()  # streams started and not ended: the batch's rows in use
        self._left: Optional[set] = None  # rows of the round being given out whose Segments has not come yet
        self._finishing: set = set()  # rows whose last window was in this round: their Finished comes next
        self._freed = False  # a row ended in this round

    def started(self, stream_id: Hashable) -> None:
        self.rows.add(stream_id)

    def window(self, stream_id: Hashable, last: bool) -> None:
        """A ``Segments`` of ``stream_id``; ``last``: its audio is done."""
        if self._left is None:  # the first window of a round: every row has one in it
            self._left = set(self.rows)
        self._left.discard(stream_id)
        if last:
            self._finishing.add(stream_id)

    def ended(self, stream_id: Hashable) -> None:
        """Finished, failed or cancelled."""
        self.rows.discard(stream_id)
        self._finishing.discard(stream_id)
        if self._left is not None:
            self._left.discard(stream_id)
        self._freed = True

    def round_over(self) -> bool:
        """True once after the last event of a round that freed rows (and leaves some running)."""
        if self._left is None or self._left or self._finishing:
            return False
        over = self._freed and bool(self.rows)
        self._left, self._freed = None, False
        return over


__all__ = ["Rounds"]
