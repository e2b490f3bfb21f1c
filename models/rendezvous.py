"""Which cell labels which stream: rendezvous (highest random weight) hashing with bounded loads, pure.

Every stream ranks every cell by a hash of (stream, cell) and prefers the highest. Plain rendezvous
hashing moves few streams but, with tens of streams, leaves cells unequal (30 streams on 3 cells
came out 13/9/8, and a fourth cell took 12). So the assignment is kept between changes and only
repaired:

1. a stream whose cell is still there stays;
2. a stream without a cell (its cell left, or it is new) goes to its highest-ranked cell that has
   room (fewer than ceil(S/N) streams), and while the homeless streams left are just enough to
   lift every cell to floor(S/N), only to a cell below that;
3. while one cell holds two streams more than another, the fullest gives the emptiest the stream
   that ranks the emptiest highest.

So a cell that leaves moves only its own streams, a cell that joins takes floor(S/N) or ceil(S/N)
streams and nothing else moves, and loads never differ by more than one. The same inputs give the
same answer in every process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence


def weight(stream: str, cell: str) -> int:
    """A stable 64-bit score of the pair (the same in every process and Python version)."""
    digest = hashlib.blake2b(f"{stream}\0{cell}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rebalance(previous: Mapping[str, str], streams: Sequence[str], cells: Sequence[str]) -> dict[str, str]:
    """Stream -> cell for `streams` on `cells`, moving as few streams of `previous` as the rules above allow."""
    if not cells:
        raise ValueError("no cells to assign streams to")
    cells = sorted(set(cells))
    low, high = len(streams) // len(cells), -(-len(streams) // len(cells))
    owners = {stream: previous[stream] for stream in streams if previous.get(stream) in cells}
    load = {cell: 0 for cell in cells}
    for cell in owners.values():
        load[cell] += 1
    homeless = sorted((s for s in streams if s not in owners), key=lambda s: (weight(s, ""), s))
    for left, stream in enumerate(homeless):
        deficit = sum(max(0, low - n) for n in load.values())
        room = [c for c in cells if load[c] < low] if len(homeless) - left <= deficit else []
        room = room or [c for c in cells if load[c] < high] or cells
        cell = max(room, key=lambda c: weight(stream, c))
        owners[stream] = cell
        load[cell] += 1
    while max(load.values()) - min(load.values()) > 1:
        fullest = max(cells, key=lambda c: load[c])
        emptiest = min(cells, key=lambda c: load[c])
        stream = max((s for s, c in owners.items() if c == fullest), key=lambda s: weight(s, emptiest))
        owners[stream] = emptiest
        load[fullest] -= 1
        load[emptiest] += 1
    return {stream: owners[stream] for stream in streams}


def streams_of(owners: Mapping[str, str], cell: str) -> list[str]:
    """The streams a cell labels, in the order they were given."""
    return [stream for stream, owner in owners.items() if owner == cell]
