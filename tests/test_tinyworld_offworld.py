"""Where a rollout leaves the world: the residual per part, the wave's amplitude, the drift."""
import dataclasses

import numpy as np
import pytest
import torch

from fademem_core.tinyworld import offworld, world
from fademem_core.tinyworld.probes import read_frames


def _video(seed: int = 3, frames: int = 12) -> tuple[world.Scene, torch.Tensor]:
    scene = world.sample_scene(seed)
    return scene, world.render(scene, 0, frames)


def test_parts_cover_every_channel_once() -> None:
    chans = sorted(c for ch in offworld.PARTS.values() for c in ch)
    assert chans == list(range(world.CHANNELS))
    assert offworld.PARTS["texture"] == world.TEXTURE_CHANNELS


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_a_rendered_video_is_on_world_in_every_part_and_drifts_at_the_scenes_speed(seed: int) -> None:
    scene, z = _video(seed)
    o = offworld.off_world(z)
    for name, values in o.parts.items():
        assert values.shape == (12,) and np.allclose(values, 0.0, atol=1e-10), name
    assert np.allclose(o.amplitude, 1.0, atol=1e-6)  # cos^2 + sin^2 on every pixel
    assert o.drift_speed == pytest.approx(abs(scene.drift_speed), abs=1e-5)


def test_parts_split_the_probes_residual() -> None:
    _, z = _video()
    z = z + 0.1 * torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    o = offworld.off_world(z)
    # the probes' residual is the mean over all 16 channels: parts weighted by their channel count
    total = sum(len(offworld.PARTS[n]) * v for n, v in o.parts.items()) / world.CHANNELS
    assert np.allclose(total, read_frames(z).residual, rtol=1e-9)


def test_a_texture_that_vanishes_reads_as_the_texture_only_from_that_frame() -> None:
    _, z = _video()
    z = z.clone()
    z[list(world.TEXTURE_CHANNELS), 5:] = 0.0
    o = offworld.off_world(z)
    # the probes re-render a full-amplitude plane wave; its mean square over the 8x8 grid is 1/2
    assert np.allclose(o.parts["texture"][:5], 0.0, atol=1e-10)
    assert np.allclose(o.parts["texture"][5:], 0.5, atol=1e-9)
    for name in ("drifting wave", "static wave", "sprites"):
        assert np.allclose(o.parts[name], 0.0, atol=1e-10), name


def test_a_washed_out_background_reads_its_amplitude() -> None:
    _, z = _video()
    z = z.clone()
    z[[0, 1], 6:] *= 0.25
    o = offworld.off_world(z)
    assert np.allclose(o.amplitude[:6], 1.0, atol=1e-6) and np.allclose(o.amplitude[6:], 0.25, atol=1e-6)
    # the probes fit a unit wave: (1 - 0.25)^2 = 0.5625 of a unit wave's mean square 1/2 per channel
    assert np.allclose(o.parts["drifting wave"][6:], 0.5625 * 0.5, atol=1e-9)


def test_a_background_that_stops_reads_no_drift_and_a_blur_reads_none() -> None:
    scene, _ = _video()
    frozen = world.render(dataclasses.replace(scene, drift_speed=0.0), 0, 12)
    assert offworld.off_world(frozen).drift_speed == pytest.approx(0.0, abs=1e-6)
    blur = frozen.clone()
    blur[[0, 1]] *= 0.3  # below MIN_AMPLITUDE everywhere: its phase is not a drift
    assert np.isnan(offworld.off_world(blur).drift_speed)


def test_world_drift_speed_and_thirds_are_written_out() -> None:
    scenes = [world.sample_scene(s) for s in range(5)]
    assert offworld.world_drift_speed(scenes) == pytest.approx(np.mean([abs(s.drift_speed) for s in scenes]))
    assert offworld.thirds(np.arange(7.0)) == [1.0, 3.5, 5.5]  # [0 1 2] [3 4] [5 6]
    with pytest.raises(ValueError, match="empty"):
        offworld.world_drift_speed([])
    with pytest.raises(ValueError, match="3 frames"):
        offworld.thirds(np.zeros(2))


def test_lines_name_the_frames_parts_and_the_worlds_drift() -> None:
    scene, z = _video(frames=9)
    lines = offworld.off_world_lines(z, [scene])
    assert lines[0] == "off-world residual by part, frames 0-2 / 3-5 / 6-8:"
    assert [ln.split()[0] for ln in lines[1:5]] == ["drifting", "static", "texture", "sprites"]
    assert "0.000 / 0.000 / 0.000" in lines[1] and "1.00 / 1.00 / 1.00 (world 1.00)" in lines[5]
    assert lines[6] == f"background drift {abs(scene.drift_speed):.3f} px/frame (world {abs(scene.drift_speed):.3f})"


def test_off_world_refuses_a_batch() -> None:
    with pytest.raises(ValueError, match=r"one video \[16, F, 8, 8\]"):
        offworld.off_world(torch.zeros(2, 16, 3, 8, 8))
