"""Return windows: a return found where the motion formula puts it, windows built around one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fademem_core.tinyworld import loop, returns, world
from fademem_core.tinyworld.probes import read_frames
from fademem_core.tinyworld.recipe import Recipe


def _one_sprite_scene() -> world.Scene:
    sprite = world.Sprite(cls=2, detail=world.DETAILS[1], speed=0.5, direction=1, enter=10.0, absence=40,
                          y_center=2.5, y_amp=0.0, y_period=40.0, y_phase=0.0)
    return world.Scene(family=0, q=1.0, r4=0.3, r5=2.1, drift0=0.0, drift_speed=0.05, sprites=(sprite, None))


def test_returns_are_where_the_motion_formula_puts_them() -> None:
    # written out: the centre is -1 + 0.5 (t - 10) on a loop of 8 + 2 + 0.5 * 40 = 30 pixels, so
    # 0.9 of the square (1.8 px) is in view once its leading edge 0.5 (t - 10) >= 1.8 and until
    # its trailing edge 0.5 (t - 10) - 2 passes 8 - 1.8: t in [13.6, 26.4] + 60 k.  The detail
    # shows at frames 14, 74, 134, 194; the first is no return (never shown before)
    assert returns.return_entries(_one_sprite_scene(), 200) == [(0, 74), (0, 134), (0, 194)]
    assert returns.first_entries(_one_sprite_scene(), 200) == [(0, 14)]


@pytest.mark.parametrize("seed", range(4))
def test_every_clip_of_a_return_window_has_a_return_in_its_second_chunk(seed: int) -> None:
    rng = np.random.default_rng(seed)
    clips, text, start, past = returns.return_window(rng, 6, 240, 9, 10, 32)
    assert clips.shape == (6, 16, start + 9, 8, 8) and text.shape == (6, world.PROMPT_LENGTH, 32)
    assert start % 3 == 0 and returns.LOWEST_START <= start <= 240 - 9
    assert past == sorted(set(past)) and len(past) == 10 and max(past) < start
    common = None
    for clip in clips:  # read back by the probes, independent of how the clip was placed
        shown = read_frames(clip).revealed()  # the detail in view
        found = {a for a in range(start + 3, start + 6) for s in range(2)
                 if shown[a, s] and not shown[a - world.MIN_ABSENCE:a, s].any() and shown[:start, s].any()}
        assert found, "no return in the window's second chunk after a seen, long absence"
        common = found if common is None else common & found
    assert common  # one frame for the whole batch (the chunk phase is drawn per batch)


def test_bad_return_windows_are_named() -> None:
    with pytest.raises(ValueError, match=r"--window >= 6 .* got window 3, frames 240"):
        returns.return_window(np.random.default_rng(0), 2, 240, 3, 4, 32)
    with pytest.raises(ValueError, match=rf"--frames >= {returns.LOWEST_START} \+ window, got window 6, frames 120"):
        returns.check_return_window(6, 120)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_a_run_takes_return_windows_at_its_share(monkeypatch, share: float) -> None:
    calls = []
    real = loop.return_window_step

    def spy(*a):
        calls.append(a)
        return real(*a)

    monkeypatch.setattr(loop, "return_window_step", spy)
    r = Recipe(episodes=3, batch=2, policy="teacher_forcing", frames=144, window=6, memory_frames=4,
               return_windows=share, ema_decay=0.9)
    run = loop.run_training(r)
    assert len(run.losses) == 3 and all(np.isfinite(run.losses))
    assert len(calls) == (3 if share else 0)
    if share:
        _, ema, _, rng, gen, batch, frames, lr, window, memory = calls[0][:10]
        assert (batch, frames, window, memory) == (2, 144, 6, 4) and isinstance(gen, torch.Generator)


def test_the_slowest_longest_lap_keeps_the_previous_showing_inside_the_earliest_window() -> None:
    # written out: at 0.3 px/frame the detail is veiled for 1.8 / 0.3 = 6 frames on the way out
    # and again on the way in, around an absence of 120 frames, so two showings are at most
    # 6 + 120 + 6 + 2 (a whole frame at each end) = 134 frames apart; a return window's return lands at frame
    # LOWEST_START + 3 or later, whose previous showing is then at frame >= 0 of the clip
    sprite = world.Sprite(cls=0, detail=world.DETAILS[0], speed=world.SPRITE_SPEED[0], direction=1,
                          enter=5.0, absence=world.MAX_ABSENCE, y_center=2.5, y_amp=0.0, y_period=40.0,
                          y_phase=0.0)
    scene = world.Scene(family=0, q=1.0, r4=0.3, r5=2.1, drift0=0.0, drift_speed=0.05, sprites=(sprite, None))
    shown = world.frame_params(scene, 0, 600).visibility[:, 0] >= world.REVEAL
    backs = returns.return_entries(scene, 600)
    assert len(backs) >= 2
    for _, t in backs:
        before = np.flatnonzero(shown[:t])
        assert t - before[-1] <= 134 < returns.LOWEST_START + 3


def test_a_return_walk_commits_the_true_past_and_trains_only_the_two_chunks_at_the_return(monkeypatch) -> None:
    from fademem_core import FadeMem

    trained, committed = [], []
    real_loss, real_commit = loop.chunk_loss, loop.commit_chunk

    def spy_loss(model, part, text, cache, positions, gen, weight):
        trained.append(part.clone())
        return real_loss(model, part, text, cache, positions, gen, weight)

    def spy_commit(model, part, *a):
        committed.append(part.clone())
        return real_commit(model, part, *a)

    monkeypatch.setattr(loop, "chunk_loss", spy_loss)
    monkeypatch.setattr(loop, "commit_chunk", spy_commit)
    model = loop.start_model(None, 0)
    ema = loop.Ema(model.transformer, 0.9)
    opt = torch.optim.AdamW(model.transformer.parameters(), lr=1e-4)
    rng, twin = np.random.default_rng(3), np.random.default_rng(3)
    losses = loop.return_walk(model, ema, opt, rng, torch.Generator().manual_seed(0), 2, 150, FadeMem(budget=6),
                              lambda j: 1e-4)
    clips, _, start, _ = returns.return_window(twin, 2, 150, 6, 0, 32)  # the same draws, read independently
    assert len(losses) == 2 and all(np.isfinite(losses))
    # every chunk of the true past went into the memory, in order, then the two trained ones
    assert len(committed) == start // 3 + 2
    for i, part in enumerate(committed):
        assert torch.equal(part, clips[:, :, 3 * i:3 * i + 3])
    # the losses are taken on the chunk before the return and on the return's own chunk
    assert [torch.equal(p, clips[:, :, s:s + 3]) for p, s in zip(trained, (start, start + 3))] == [True, True]
    shown = read_frames(clips[0]).revealed()
    assert shown[start + 3:start + 6].any()  # a detail shows again in the second trained chunk


def test_a_loop_run_takes_return_walks_at_its_share() -> None:
    r = Recipe(episodes=2, batch=2, policy="fademem", frames=144, return_windows=1.0, ema_decay=0.9)
    run = loop.run_training(r)
    assert len(run.losses) == 4 and run.per_episode == 2  # two chunks per return walk
