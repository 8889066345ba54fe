"""Position strategies on their own (memory/positions.py); each policy's use is in its tests."""
from __future__ import annotations

from fademem_core import SinkWindow
from fademem_core.memory.contract import Entry
from fademem_core.memory.positions import POSITIONS, SinkShifted
from tests.support.policy_harness import roll_to


def test_sink_shifted_packs_the_held_entries_just_before_the_chunk():
    held = [Entry(float(f), 1, f) for f in (0, 1, 2, 14, 15, 16, 17, 18, 19)]
    strategy = POSITIONS["sink_shifted"]
    assert isinstance(strategy, SinkShifted) and strategy.moves_keys
    # written out: 9 entries before a chunk at 20 sit at 11..19, the chunk at 20, 21, 22
    assert strategy.entry_positions(held, 20) == [11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0]
    assert strategy.chunk_positions(held, 20, 3) == [20.0, 21.0, 22.0]
    assert strategy.entry_positions([], 0) == [] and strategy.chunk_positions([], 0, 2) == [0.0, 1.0]


def test_in_a_sink_window_the_recent_frames_keep_their_frame_index_and_the_sink_follows():
    cache, positions = roll_to(SinkWindow(sink=3, window=9, positions="sink_shifted"), 30)
    assert positions == [30.0, 31.0, 32.0]
    assert cache.exact_frames() == [0, 1, 2, 24, 25, 26, 27, 28, 29]
    assert cache.encoded_positions() == [21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0]
