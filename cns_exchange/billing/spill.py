"""Records kept in bounded memory: what does not fit is written to an anonymous temporary file.

A build groups its sessions into fee notes, orders the notes and prices them all before it
writes the first one (the header carries the totals). Held whole, a million sessions take
half a gigabyte; here each stage holds at most ``budget`` of them (counted by the weight the
caller gives a record: its sessions) and writes the rest, sorted, to a file:
:class:`Sorter` is an external merge sort, :class:`Spool` a queue in arrival order.

The file is made by :func:`tempfile.TemporaryFile`: 0600 and without a name (on Linux it never
has one; elsewhere it is unlinked at once), so that nothing is left behind when the run ends,
fails, is interrupted or killed, and no other user can read the health data in it. Records
are tuples of str, int and None (nested tuples and lists too), written with :mod:`marshal`,
which is fast and only ever reads back what this process wrote.
"""

from __future__ import annotations

import heapq
import marshal
import os
import struct
import tempfile
from typing import Any, Iterator

from cns_exchange.i18n import _

#: Records read or written at a time: a merge of R runs holds R blocks.
BLOCK_WEIGHT = 512
_LENGTH = struct.Struct("<Q")


class _Blocks:
    """An anonymous file of marshalled blocks of records; ranges of it are read back in order."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="cnsx-spill-")
        self.end = 0

    def write(self, records: list) -> tuple[int, int]:
        """Append ``records`` (in blocks); return their range in the file."""
        start = self.end
        for i in range(0, len(records), BLOCK_WEIGHT):
            self._block(records[i:i + BLOCK_WEIGHT])
        return start, self.end

    def _block(self, records: list) -> None:
        data = marshal.dumps(records)
        self.file.write(_LENGTH.pack(len(data)))
        self.file.write(data)
        self.end += _LENGTH.size + len(data)

    def read(self, start: int, end: int) -> Iterator[Any]:
        """Yield the records written between ``start`` and ``end``, a block at a time."""
        self.file.flush()
        fd = self.file.fileno()
        while start < end:
            (size,) = _LENGTH.unpack(os.pread(fd, _LENGTH.size, start))
            data = os.pread(fd, size, start + _LENGTH.size)
            if len(data) != size:
                raise OSError(_("a temporary file of cnsx was cut short ({read} of {size} bytes)").format(read=len(data), size=size))
            start += _LENGTH.size + size
            yield from marshal.loads(data)

    def close(self) -> None:
        self.file.close()


class _Held:
    """What :class:`Sorter` and :class:`Spool` share: records held in memory up to ``budget``
    weight, and the file the held ones are written to (made on first use) when it is reached.
    :class:`Sorter` sorts them first and keeps where each run is."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._held: list = []
        self._weight = 0
        self._blocks: _Blocks | None = None

    def add(self, record: Any, weight: int = 1) -> None:
        self._held.append(record)
        self._weight += weight
        if self._weight >= self.budget:
            self._spill()

    def _spill(self) -> tuple[int, int]:
        """Write the records held to the file, in their order, and let them go; return their range."""
        if self._blocks is None:
            self._blocks = _Blocks()
        written = self._blocks.write(self._held)
        self._held, self._weight = [], 0
        return written

    def close(self) -> None:
        """Let the records go and remove the file (it has no name: closing removes it)."""
        self._held = []
        if self._blocks is not None:
            self._blocks.close()
            self._blocks = None


class Sorter(_Held):
    """Records given in any order, handed back once in sorted order (tuples compare item by
    item: the caller puts the key first and makes it unique). At most ``budget`` weight is
    held in memory; each time it is reached the records held are sorted and written out as a
    run, and the runs are merged when read (:func:`heapq.merge`)."""

    def __init__(self, budget: int) -> None:
        super().__init__(budget)
        self._runs: list[tuple[int, int]] = []

    def _spill(self) -> tuple[int, int]:
        self._held.sort()
        run = super()._spill()
        self._runs.append(run)
        return run

    def __iter__(self) -> Iterator[Any]:
        """The records in order; read once (what is handed out is let go). The file is closed
        at the end, or by :meth:`close`."""
        try:
            if self._runs and self._held:
                self._spill()
            if self._runs:
                yield from heapq.merge(*(self._blocks.read(*run) for run in self._runs))  # type: ignore[union-attr]
            else:
                held, self._held = self._held, []
                held.sort()
                yield from _let_go(held)
        finally:
            self.close()

    def close(self) -> None:
        self._runs = []
        super().close()


class Spool(_Held):
    """Records handed back once in the order they were added, at most ``budget`` weight held
    in memory (the older ones go to the file, a block at a time)."""

    def __init__(self, budget: int) -> None:
        super().__init__(budget)
        self.count = 0

    def add(self, record: Any, weight: int = 1) -> None:
        self.count += 1
        super().add(record, weight)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Any]:
        """The records in order, read once; the file is closed at the end or by :meth:`close`."""
        try:
            if self._blocks is not None:
                yield from self._blocks.read(0, self._blocks.end)
            held, self._held = self._held, []
            yield from _let_go(held)
        finally:
            self.close()


def _let_go(held: list) -> Iterator[Any]:
    """The records of ``held`` in order, each let go (popped) as it is handed out, so that
    memory shrinks as the caller goes."""
    held.reverse()
    pop = held.pop
    while held:
        yield pop()
