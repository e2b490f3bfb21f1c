"""Rendezvous hashing with bounded loads: a leaving cell moves only its streams, a joining one takes
at most 1.5x its fair share, and loads never differ by more than one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.rendezvous import rebalance, streams_of

STREAMS = [f"cam{i}" for i in range(30)]
CELL_NAMES = st.lists(st.text("abcdef0123456789", min_size=4, max_size=16), min_size=2, max_size=8, unique=True)
STREAM_COUNTS = st.integers(min_value=0, max_value=200)


def loads(owners: dict[str, str], cells: list[str]) -> list[int]:
    return [len(streams_of(owners, cell)) for cell in cells]


def test_every_stream_has_one_cell_and_thirty_streams_split_ten_ten_ten():
    owners = rebalance({}, STREAMS, ["c", "a", "b"])
    assert list(owners) == STREAMS and set(owners.values()) == {"a", "b", "c"}
    assert loads(owners, ["a", "b", "c"]) == [10, 10, 10]


def test_the_answer_does_not_depend_on_the_order_cells_are_listed():
    assert rebalance({}, STREAMS, ["a", "b", "c"]) == rebalance({}, STREAMS, ["c", "b", "a"])


def test_no_cells_is_an_error():
    with pytest.raises(ValueError, match="no cells"):
        rebalance({}, STREAMS, [])


@settings(max_examples=80, deadline=None)
@given(CELL_NAMES, STREAM_COUNTS, st.data())
def test_a_leaving_cell_moves_only_its_own_streams_and_loads_stay_even(cells, count, data):
    streams = [f"s{i}" for i in range(count)]
    leaving = data.draw(st.sampled_from(cells))
    before = rebalance({}, streams, cells)
    rest = [c for c in cells if c != leaving]
    after = rebalance(before, streams, rest)
    assert {s for s in streams if before[s] != after[s]} == set(streams_of(before, leaving))
    assert max(loads(after, rest)) - min(loads(after, rest)) <= 1


@settings(max_examples=80, deadline=None)
@given(CELL_NAMES, STREAM_COUNTS, st.text("ghijkl", min_size=4, max_size=8))
def test_a_joining_cell_takes_at_most_one_and_a_half_fair_shares_and_nothing_else_moves(cells, count, joining):
    streams = [f"s{i}" for i in range(count)]
    before = rebalance({}, streams, cells)
    after = rebalance(before, streams, cells + [joining])
    moved = [s for s in streams if before[s] != after[s]]
    assert all(after[s] == joining for s in moved)
    assert len(moved) <= 1.5 * count / (len(cells) + 1)
    assert max(loads(after, cells + [joining])) - min(loads(after, cells + [joining])) <= 1


def test_three_cells_then_a_fourth_then_one_leaves_with_thirty_streams():
    cells = ["cell-0", "cell-1", "cell-2"]
    three = rebalance({}, STREAMS, cells)
    four = rebalance(three, STREAMS, cells + ["cell-3"])
    assert sorted(streams_of(four, "cell-3")) == sorted(s for s in STREAMS if three[s] != four[s])
    assert 7 <= len(streams_of(four, "cell-3")) <= 8  # its fair share is 7.5
    back = rebalance(four, STREAMS, cells)
    assert {s for s in STREAMS if back[s] != four[s]} == set(streams_of(four, "cell-3"))

