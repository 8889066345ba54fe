"""Long-horizon consistency scores of a video of the tiny world, frame by frame.

A rollout is a *sample*: its sprites' details and its layout phases are the model's own
choices, so identity and layout are scored against what the video itself showed first (its
first appearance / first chunk), classes and background family against the prompt, motion and
liveness against the world's own statistics.  All scores come from :mod:`.probes` only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .probes import Reading, circular_distance, read_frames
from .world import DETAILS, MAX_SPRITES, SIZE

SHOWN = 0.5  # a sprite counts as seen when at least half of it is in frame
RETURN_GAP = 30  # frames unseen before a re-appearance counts as a "return" (> every window here)
RETURN_FRAMES = 3  # frames scored after each return
DETAIL_TOL = 0.4  # a drawn detail is a codebook entry when this close (entries are 1.6 apart)


@dataclass
class VideoScores:
    """Per-frame scores ``[F]`` (NaN where undefined) of one video."""

    identity_error: np.ndarray  # mean over revealed sprites of |detail - detail at first sight|
    return_error: np.ndarray  # the same, only on the first frames after a return
    class_ok: np.ndarray  # fraction of seen sprites whose class is the prompted one
    phantom: np.ndarray  # 1 when a sprite is seen in a slot the prompt leaves empty
    presence: np.ndarray  # fraction of prompted sprites that are seen
    layout_error: np.ndarray  # background phase drift vs the first chunk, 0..1
    family_ok: np.ndarray  # background family is the prompted one
    jerk: np.ndarray  # |second difference| of seen sprites' centres (motion continuity)
    sprite_speed: np.ndarray  # |first difference| of seen sprites' centres
    drift_speed: np.ndarray  # |first difference| of the background drift
    change: np.ndarray  # mean squared latent change from the previous frame
    residual: np.ndarray  # distance of the frame to the world (probe re-render error)


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(invalid="ignore"), warnings_off():
        return np.nanmean(x, axis=axis)


class warnings_off:
    """Silence numpy's 'mean of empty slice' inside a with-block."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def score_video(
    latents: torch.Tensor, family: int, classes: tuple[int | None, ...], reading: Reading | None = None
) -> VideoScores:
    """Scores of one video ``[16, F, 8, 8]`` generated for ``family`` / ``classes``."""
    r = read_frames(latents) if reading is None else reading
    z = latents.detach().cpu().double().numpy()
    f = z.shape[1]
    classes = tuple(classes) + (None,) * (MAX_SPRITES - len(classes))
    seen = r.visibility >= SHOWN  # [F, S]
    shown = r.revealed()  # [F, S]: where the detail can be read (world.REVEAL)
    ident = np.full((f, MAX_SPRITES), np.nan)
    ret = np.full((f, MAX_SPRITES), np.nan)
    cls_ok = np.full((f, MAX_SPRITES), np.nan)
    phantom = np.zeros(f)
    presence = np.full((f, MAX_SPRITES), np.nan)
    jerk = np.full((f, MAX_SPRITES), np.nan)
    speed = np.full((f, MAX_SPRITES), np.nan)
    for s, want in enumerate(classes):
        if want is None:
            phantom = np.maximum(phantom, seen[:, s].astype(float))
            continue
        presence[:, s] = seen[:, s]
        idx = np.flatnonzero(seen[:, s])
        cls_ok[idx, s] = r.cls[idx, s] == want
        idx = np.flatnonzero(shown[:, s])  # from here on: the frames its detail can be read in
        if len(idx):
            # identity reference: the first appearance (up to 3 frames of it)
            first = idx[: RETURN_FRAMES]
            first = first[first - first[0] < RETURN_FRAMES]
            ref = np.median(r.detail[first, s], axis=0)
            err = np.linalg.norm(r.detail[idx, s] - ref, axis=1)
            ident[idx, s] = err
            gaps = np.diff(idx)
            for k in np.flatnonzero(gaps >= RETURN_GAP):
                back = idx[k + 1 : k + 1 + RETURN_FRAMES]
                back = back[back - back[0] < RETURN_FRAMES]
                ret[back, s] = np.linalg.norm(r.detail[back, s] - ref, axis=1)
        full = r.visibility[:, s] >= 0.9
        p = r.pos[:, s]
        ok1 = full[1:] & full[:-1]
        d1 = np.linalg.norm(np.diff(p, axis=0), axis=1)
        speed[1:, s] = np.where(ok1, d1, np.nan)
        ok2 = full[2:] & full[1:-1] & full[:-2]
        d2 = np.linalg.norm(p[2:] - 2 * p[1:-1] + p[:-2], axis=1)
        jerk[2:, s] = np.where(ok2, d2, np.nan)
    first = slice(0, min(3, f))
    lay = []
    for arr, period, half in ((r.params.q, SIZE, SIZE / 2), (r.params.r4, 2 * math.pi, math.pi), (r.params.r5, 2 * math.pi, math.pi)):
        ang = arr * 2 * math.pi / period
        ref = math.atan2(np.sin(ang[first]).mean(), np.cos(ang[first]).mean()) * period / (2 * math.pi)
        lay.append(circular_distance(arr, ref, period) / half)
    drift = np.full(f, np.nan)
    drift[1:] = circular_distance(r.shift[1:], r.shift[:-1], SIZE)
    change = np.full(f, np.nan)
    change[1:] = ((z[:, 1:] - z[:, :-1]) ** 2).mean(axis=(0, 2, 3))
    return VideoScores(
        identity_error=_nanmean(ident, 1),
        return_error=_nanmean(ret, 1),
        class_ok=_nanmean(cls_ok, 1),
        phantom=phantom,
        presence=_nanmean(presence, 1),
        layout_error=np.mean(lay, axis=0),
        family_ok=(r.params.family == family).astype(float),
        jerk=_nanmean(jerk, 1),
        sprite_speed=_nanmean(speed, 1),
        drift_speed=drift,
        change=change,
        residual=r.residual,
    )


@dataclass(frozen=True)
class MemoryEvent:
    """One appearance of a sprite the model drew: a return (recall) or a first entry (fresh)."""

    slot: int
    frame: int  # first frame its detail shows again
    kind: str  # "return": came back after >= RETURN_GAP unseen frames; "first": never seen before
    ok: bool  # return: same codebook detail as before the absence; first: a valid, new detail
    nearest: bool = False  # return only: same nearest codebook entry, however far (blurred) it is


def _appearances(seen: np.ndarray) -> list[np.ndarray]:
    """Runs of seen frames, split where the sprite was unseen for >= RETURN_GAP frames."""
    idx = np.flatnonzero(seen)
    if not len(idx):
        return []
    cuts = np.flatnonzero(np.diff(idx) > RETURN_GAP) + 1
    return np.split(idx, cuts)


def _snap(details: np.ndarray) -> tuple[int, float]:
    """Nearest codebook entry of the median detail, and its distance."""
    d = np.linalg.norm(np.asarray(DETAILS)[None] - np.median(details, axis=0)[None], axis=-1)[0]
    return int(d.argmin()), float(d.min())


def memory_events(reading: Reading, start: int) -> list[MemoryEvent]:
    """Appearances beginning at or after frame ``start`` (the model's part of a primed video).

    A return is right when its first ``RETURN_FRAMES`` seen frames snap to the codebook entry the
    same video showed in the last frames before the absence; a first entry is right when it
    snaps to an entry (within ``DETAIL_TOL``) that the other sprite has not shown before it.
    """
    events = []
    seen = reading.revealed()  # an appearance is scored where its detail shows
    runs = [_appearances(seen[:, s]) for s in range(MAX_SPRITES)]
    for s in range(MAX_SPRITES):
        for j, run in enumerate(runs[s]):
            if run[0] < start:
                continue
            got, dist = _snap(reading.detail[run[:RETURN_FRAMES], s])
            if j > 0:
                want, _ = _snap(reading.detail[runs[s][j - 1][-RETURN_FRAMES:], s])
                events.append(MemoryEvent(s, int(run[0]), "return", got == want and dist < DETAIL_TOL,
                                          got == want))
                continue
            other = [r for r in runs[1 - s] if r[0] < run[0]] if MAX_SPRITES == 2 else []
            taken = {_snap(reading.detail[r[:RETURN_FRAMES], 1 - s])[0] for r in other}
            events.append(MemoryEvent(s, int(run[0]), "first", dist < DETAIL_TOL and got not in taken))
    return events


def event_rate(events: list[MemoryEvent], kind: str, field: str = "ok") -> float:
    """Fraction of ``kind`` events whose ``field`` is true (NaN when there is none)."""
    oks = [getattr(e, field) for e in events if e.kind == kind]
    return float(np.mean(oks)) if oks else math.nan


FIELDS = tuple(VideoScores.__dataclass_fields__)


def stack_scores(scores: list[VideoScores]) -> dict[str, np.ndarray]:
    """``{field: [N, F]}`` over videos."""
    return {k: np.stack([getattr(s, k) for s in scores]) for k in FIELDS}


def mean_over(stacked: dict[str, np.ndarray], frames: slice = slice(None)) -> dict[str, float]:
    """Mean of every score over videos and the given frames (NaNs ignored)."""
    with warnings_off():
        return {k: float(np.nanmean(v[:, frames])) for k, v in stacked.items()}


def binned(values: np.ndarray, width: int) -> np.ndarray:
    """NaN-mean over videos and bins of ``width`` frames: ``[N, F] -> [F // width]``."""
    n, f = values.shape
    nb = f // width
    with warnings_off():
        return np.nanmean(values[:, : nb * width].reshape(n, nb, width).transpose(1, 0, 2).reshape(nb, -1), axis=1)
