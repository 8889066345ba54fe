"""Named presets: a peer's memory that an existing policy already is, with that peer's defaults."""
from __future__ import annotations

import pytest

from fademem_core import SlidingWindow, policy_from_name
from tests.support.policy_harness import roll_to
from tests.support.policy_reference import self_forcing_frames


def test_self_forcing_is_the_21_frame_sliding_window():
    assert policy_from_name("self_forcing") == SlidingWindow(window=21)
    assert policy_from_name("self-forcing", window=24) == SlidingWindow(window=24)


def test_self_forcing_rolls_its_fifo_past_21_frames_with_absolute_positions():
    for start in (0, 9, 18, 21, 24, 33, 60):
        cache, chunk_positions = roll_to(policy_from_name("self_forcing"), start)
        frames = self_forcing_frames(start)
        assert cache.exact_frames() == frames
        assert cache.encoded_positions() == [float(f) for f in frames]
        assert chunk_positions == [float(start + j) for j in range(3)]
        cache.close()


def test_a_preset_refuses_what_its_policy_refuses():
    with pytest.raises(ValueError, match="window"):
        policy_from_name("self_forcing", window=0)
