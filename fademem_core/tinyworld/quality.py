"""Does a rollout render the world?  Issue 11's point-1 check, on the world's own probes.

Four numbers against four bars (all read by :mod:`.probes`, never by the model):

* off-world residual over the whole rollout <= 2x the model's *one-step teacher-forced*
  residual (each chunk sampled from a ground-truth memory, :func:`teacher_forced_residual`);
* prompted-class accuracy >= 0.9 over the seen sprite frames of the first 30 frames;
* mean sprite speed within 25 % of the world's (a frozen or jittering video fails);
* mean per-frame contrast (std of the RGB frame) within 25 % of the world's renders.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .probes import circular_distance, read_frames
from .scores import SHOWN, score_video, warnings_off
from .world import REVEAL, SIZE, Scene, render, scene_prompt, to_rgb

RESIDUAL_FACTOR = 2.0
CLASS_MIN = 0.9
CLASS_FRAMES = 30
SPEED_TOL = 0.25
CONTRAST_TOL = 0.25
# a sprite this much in frame has an exact centre and an unveiled detail on rendered frames (the
# detail errors below are read only there: it is NaN where veiled)
FULL = REVEAL


@dataclass(frozen=True)
class RenderCheck:
    """Measured values of a rollout next to the world's (or the teacher-forced model's)."""

    residual: float
    teacher_residual: float
    class_acc: float  # over the first CLASS_FRAMES frames (NaN: no sprite seen there)
    speed: float
    world_speed: float
    contrast: float
    world_contrast: float

    @property
    def verdicts(self) -> dict[str, bool]:
        return {
            "residual": self.residual <= RESIDUAL_FACTOR * self.teacher_residual,
            "class": bool(self.class_acc >= CLASS_MIN),
            "speed": abs(self.speed / self.world_speed - 1) <= SPEED_TOL,
            "contrast": abs(self.contrast / self.world_contrast - 1) <= CONTRAST_TOL,
        }

    @property
    def passed(self) -> bool:
        return all(self.verdicts.values())

    def lines(self) -> list[str]:
        v = self.verdicts
        mark = {True: "ok", False: "FAIL"}
        return [
            f"off-world residual {self.residual:.4f} (teacher-forced {self.teacher_residual:.4f}, "
            f"bar {RESIDUAL_FACTOR:g}x) {mark[v['residual']]}",
            f"prompted class over the first {CLASS_FRAMES} frames {self.class_acc:.2f} "
            f"(bar {CLASS_MIN}) {mark[v['class']]}",
            (f"sprite speed {self.speed:.3f} px/frame" if np.isfinite(self.speed)
             else "sprite speed - (no sprite fully in view two frames running)")
            + f" (world {self.world_speed:.3f}, +-{SPEED_TOL:.0%}) {mark[v['speed']]}",
            f"contrast {self.contrast:.1f} (world {self.world_contrast:.1f}, +-{CONTRAST_TOL:.0%}) "
            f"{mark[v['contrast']]}",
        ]


def _contrast(latents: torch.Tensor) -> float:
    """Mean over frames of the std of the RGB frame (what a viewer sees as contrast)."""
    rgb = to_rgb(latents, scale=1).astype(np.float64)
    return float(rgb.reshape(rgb.shape[0], -1).std(axis=1).mean())


def _class_acc(latents: torch.Tensor, classes: tuple[int | None, ...]) -> tuple[int, int]:
    r = read_frames(latents[:, :CLASS_FRAMES])
    ok = n = 0
    for slot, want in enumerate(classes):
        if want is None:
            continue
        seen = r.visibility[:, slot] >= SHOWN
        ok += int(np.sum(r.cls[seen, slot] == want))
        n += int(np.sum(seen))
    return ok, n


def check_rendering(
    videos: torch.Tensor, scenes: list[Scene], teacher_residual: float, world: list[Scene] | None = None
) -> RenderCheck:
    """Check ``videos [B, 16, F, 8, 8]`` generated for the prompts of ``scenes`` (one each).

    The world's speed and contrast come from renders of ``world`` (default: ``scenes``) over the
    same frames; a free rollout is one sample, so give it many scenes of the same prompt.
    """
    if videos.ndim != 5 or videos.shape[0] != len(scenes):
        raise ValueError(f"videos must be [B, 16, F, 8, 8] with one scene per video, got "
                         f"{tuple(videos.shape)} for {len(scenes)} scenes")
    f = videos.shape[2]
    resid, speed, contrast = [], [], []
    ok = n = 0
    for z, s in zip(videos, scenes):
        sv = score_video(z, s.family, s.classes)
        resid.append(sv.residual.mean())
        speed.append(sv.sprite_speed)
        contrast.append(_contrast(z))
        a, b = _class_acc(z, s.classes)
        ok, n = ok + a, n + b
    truths = [(render(s, 0, f), s) for s in (scenes if world is None else world)]
    wspeed = [score_video(t, s.family, s.classes).sprite_speed for t, s in truths]
    with warnings_off():
        return RenderCheck(
            residual=float(np.mean(resid)), teacher_residual=float(teacher_residual),
            class_acc=ok / n if n else float("nan"),
            speed=float(np.nanmean(np.concatenate(speed))), world_speed=float(np.nanmean(np.concatenate(wspeed))),
            contrast=float(np.mean(contrast)), world_contrast=float(np.mean([_contrast(t) for t, _ in truths])),
        )


@torch.no_grad()
def teacher_forced_samples(model, scenes: list[Scene], frames: int, steps: int, shift: float,
                           seed: int = 0, sampler: str = "euler") -> tuple[torch.Tensor, torch.Tensor]:
    """``(sampled, truth)``, both ``[B, 16, frames, 8, 8]``: every chunk sampled from a ground-truth memory.

    Every chunk of ``frames`` is sampled (``sampler``: ``"euler"`` or ``"few_step"``, ``steps``)
    against the full memory of the *true* earlier frames; the true chunk is then committed.
    That is the model's own error with no accumulated drift: the floor a free rollout is
    measured against.
    """
    from ..checks import SAMPLERS, check_choice
    from ..memory.policies import FullCache
    from ..rollout.sampler import denoise_chunk, even_timesteps, timestep_schedule
    from .spec import CHUNK

    euler = check_choice("sampler", sampler, SAMPLERS) == "euler"

    truth = torch.stack([render(s, 0, frames) for s in scenes])
    b, c, _, h, w = truth.shape
    text = torch.cat([scene_prompt(s, model.text_dim) for s in scenes])
    kv = model.encode_text(text)
    times = timestep_schedule(even_timesteps(steps), shift)
    cache = FullCache().make_cache(model.geometry(b, h * 8, w * 8), CHUNK, max_frames=frames)
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros_like(truth)
    try:
        for start in range(0, frames, CHUNK):
            n = min(CHUNK, frames - start)
            positions = cache.begin_chunk(start, n)
            x = torch.randn(b, c, n, h, w, generator=gen)
            out[:, :, start:start + n] = denoise_chunk(
                model, x, kv, cache, positions, times, euler,
                fresh_noise=lambda n=n: torch.randn(b, c, n, h, w, generator=gen))
            model.forward_chunk(truth[:, :, start:start + n], 0.0, kv, cache, positions, write=True)
            cache.commit()
    finally:
        cache.close()
    return out, truth


def teacher_forced_residual(model, scenes: list[Scene], frames: int, steps: int, shift: float, seed: int = 0,
                            sampler: str = "euler") -> float:
    """Mean off-world residual of :func:`teacher_forced_samples` (the demo check's floor)."""
    out, _ = teacher_forced_samples(model, scenes, frames, steps, shift, seed, sampler)
    return float(np.mean([read_frames(z).residual.mean() for z in out]))


@dataclass(frozen=True)
class OneStepErrors:
    """How far chunks sampled from the true memory are from the truth, read by the probes.

    ``sprite_dx``: median horizontal centre error (latent px) over frames where a sprite is
    fully visible in both; ``detail``: mean distance of its detail code there; ``shift``: mean
    circular error of the background drift; ``residual``: mean off-world residual.  The
    motion and identity a model can copy from its memory, before any rollout drift.
    """

    sprite_dx: float
    detail: float
    shift: float
    residual: float
    sprite_frames: int


def one_step_errors(sampled: torch.Tensor, truth: torch.Tensor, skip: int = 3) -> OneStepErrors:
    """:class:`OneStepErrors` of ``sampled`` against ``truth`` (``[B, 16, F, 8, 8]`` each),
    ignoring the first ``skip`` frames (the first chunk has no memory to copy)."""
    if sampled.shape != truth.shape or sampled.ndim != 5:
        raise ValueError(f"sampled and truth must be equal [B, 16, F, 8, 8], got {tuple(sampled.shape)} "
                         f"and {tuple(truth.shape)}")
    dx, det, shift, res = [], [], [], []
    for z, t in zip(sampled, truth):
        r, g = read_frames(z), read_frames(t)
        ok = (r.visibility >= FULL) & (g.visibility >= FULL)
        ok[:skip] = False
        dx.append(np.abs(r.pos[..., 0] - g.pos[..., 0])[ok])
        det.append(np.linalg.norm(r.detail - g.detail, axis=-1)[ok])
        shift.append(circular_distance(r.shift, g.shift, SIZE)[skip:])
        res.append(r.residual[skip:])
    dx_all = np.concatenate(dx)
    with warnings_off():
        return OneStepErrors(
            sprite_dx=float(np.median(dx_all)) if len(dx_all) else float("nan"),
            detail=float(np.mean(np.concatenate(det))), shift=float(np.mean(np.concatenate(shift))),
            residual=float(np.mean(np.concatenate(res))), sprite_frames=int(len(dx_all)))
