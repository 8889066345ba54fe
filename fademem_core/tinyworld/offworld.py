"""Where and how a rollout leaves the world: the render check's residual taken apart.

:mod:`.quality` says *whether* a video renders the world; this module says *which part* of the
picture goes off-world, and *when*, read by the probes only (never the model):

* the off-world residual per part of the picture (:data:`PARTS`: the drifting wave, the static
  wave, the texture, the sprites), per frame;
* the drifting wave's amplitude per frame (``|ch0 + i ch1|``, 1 on every rendered pixel): a
  background that washes out reads below 1;
* the background's drift speed (the median frame-to-frame change of the drift the probes
  read, on frames whose wave is still at least half there): a background that stops moving
  reads 0, the world draws 0.03-0.06 latent px per frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .probes import channel_errors, read_frames
from .world import CODE_CHANNELS, MASK_CHANNELS, SIZE, TEXTURE_CHANNELS, Scene

# the picture's parts, by the channels of :mod:`.world` that draw them (its table: 0-1 the
# drifting wave, 2-3 the static one)
PARTS: dict[str, tuple[int, ...]] = {
    "drifting wave": (0, 1),
    "static wave": (2, 3),
    "texture": TEXTURE_CHANNELS,
    "sprites": tuple(sorted((*MASK_CHANNELS, *(c for code in CODE_CHANNELS for c in code)))),
}
# below this amplitude the drift read from the wave is the phase of a blur, not a drift
MIN_AMPLITUDE = 0.5


@dataclass(frozen=True)
class OffWorld:
    """The probes' reading of one video ``[16, F, 8, 8]``, part by part (:func:`off_world`)."""

    parts: dict[str, np.ndarray]  # part -> [F] mean squared residual over the part's channels
    amplitude: np.ndarray  # [F] mean |ch0 + i ch1| (1 on rendered frames)
    drift_speed: float  # latent px per frame (NaN: fewer than two frames with the wave there)

    @property
    def frames(self) -> int:
        return len(self.amplitude)


def off_world(latents: torch.Tensor) -> OffWorld:
    """Take the probes' off-world residual of ``latents [16, F, 8, 8]`` apart by :data:`PARTS`."""
    if latents.ndim != 4 or latents.shape[0] != 16:
        raise ValueError(f"latents must be one video [16, F, 8, 8], got {tuple(latents.shape)}")
    reading = read_frames(latents)
    err = channel_errors(latents, reading)  # [16, F]
    parts = {name: err[list(ch)].mean(axis=0) for name, ch in PARTS.items()}
    z = latents[:2].double().cpu().numpy()
    amplitude = np.hypot(z[0], z[1]).mean(axis=(1, 2))
    # signed step of the drift on the circle, wrapped to [-SIZE/2, SIZE/2)
    step = np.mod(np.diff(reading.shift) + SIZE / 2, SIZE) - SIZE / 2
    there = (amplitude[1:] >= MIN_AMPLITUDE) & (amplitude[:-1] >= MIN_AMPLITUDE)
    speed = float(np.median(np.abs(step[there]))) if there.any() else float("nan")
    return OffWorld(parts=parts, amplitude=amplitude, drift_speed=speed)


def world_drift_speed(scenes: list[Scene]) -> float:
    """The mean drift speed (latent px per frame) the world draws for ``scenes``."""
    if not scenes:
        raise ValueError("scenes must not be empty")
    return float(np.mean([abs(s.drift_speed) for s in scenes]))


def thirds(values: np.ndarray) -> list[float]:
    """The mean of ``values [F]`` over its first, middle and last third of frames (F >= 3)."""
    if len(values) < 3:
        raise ValueError(f"need at least 3 frames, got {len(values)}")
    return [float(v.mean()) for v in np.array_split(np.asarray(values, dtype=np.float64), 3)]


def off_world_lines(latents: torch.Tensor, scenes: list[Scene]) -> list[str]:
    """Printable lines of :func:`off_world` for one video, against the world's drift of ``scenes``."""
    o = off_world(latents)
    spans = [f"{int(s[0])}-{int(s[-1])}" for s in np.array_split(np.arange(o.frames), 3)]

    def row(values: np.ndarray, fmt: str = ".3f") -> str:
        return " / ".join(format(v, fmt) for v in thirds(values))

    speed = "-" if not np.isfinite(o.drift_speed) else f"{o.drift_speed:.3f}"
    return [f"off-world residual by part, frames {' / '.join(spans)}:"] + [
        f"  {name:<16}{row(values)}" for name, values in o.parts.items()
    ] + [
        f"  {'wave amplitude':<16}{row(o.amplitude, '.2f')} (world 1.00)",
        f"background drift {speed} px/frame (world {world_drift_speed(scenes):.3f})",
    ]
