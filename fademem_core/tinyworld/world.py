"""A procedural toy world rendered straight into the model's latent format.

Every video is a list of latent frames ``[16, F, 8, 8]`` (8x8 latents = 64x64 pixels after the
Wan VAE's 8x spatial compression; patched 2x2 by the DiT that is 16 tokens per frame).  The
channels have fixed meanings so that :mod:`.probes` can read every property back exactly:

====== ===============================================================================
ch     content
====== ===============================================================================
0, 1   cos/sin of ``2*pi*(x - s)/8``: a horizontal wave that drifts slowly (``s`` = drift)
2, 3   cos/sin of ``2*pi*(y - q)/8``: a static vertical wave (``q``: per-video layout)
4, 5   a texture: one plane wave each, frequencies and phases ``r4, r5`` from the scene's
       *family* (in the prompt), drifting with ``s`` and offset by ``q`` like channels 0-3
       (never tied to the frame's absolute rows, which a RoPE-only transformer cannot see)
6, 7   sprite A / B footprint (box-filtered 2x2 square, times ``MASK_GAIN``)
8-11   sprite A identity code times its footprint; 12-15 the same for sprite B (the detail,
       channels 10-11 / 14-15, is veiled to 0 until ``REVEAL`` of the sprite is in frame)
====== ===============================================================================

A sprite's identity code has 4 numbers: ``CLASS_RADIUS * (cos, sin)(2*pi*class/6)`` (the class
is named in the prompt) and a 2-number *detail* drawn per video from a 4-entry codebook (not
in the prompt; the two sprites of a video never share one).  Only a model that remembers what
it drew can keep the detail when a sprite comes back after a long absence.  The detail is
*veiled* while the sprite is coming in (less than ``REVEAL`` of it in frame): the recent frames
then show a returning sprite's class, footprint and speed, so when its detail appears is known,
and only a memory of the far past can say which one it is (a detail shown in the very first,
barely visible frame of a return would ask for memory at the one moment no model can predict):

* sprite A (slot 0) is on screen from the first frame (so the sink of a sink+window memory
  holds it; in about 1 scene in 5 it is still coming in, its detail veiled at frame 0, and in
  about 1 in 100 through all three sink frames), sprite B (slot 1) first enters between
  frames 20 and 100 (after any sink; its detail first shows by frame 106);
* after crossing the frame a sprite stays out of it for 40 to 120 latent frames, far longer
  than any recent window, and comes back with the same identity; sprite B's first return
  happens before frame 225, so a 240-frame video always asks for it;
* fresh content: sprite B's first appearance and every background frame are new, so a policy
  that only copies the past cannot draw them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_int

CHANNELS = 16
SIZE = 8  # latent height == width
NUM_CLASSES = 6
NUM_FAMILIES = 4
MAX_SPRITES = 2
SPRITE_SIZE = 2.0  # side of the square, latent pixels (integer: keeps centroids exact)
REVEAL = 0.9  # a sprite's detail shows only while at least this share of it is in frame
SPRITE_SPEED = (0.3, 0.5)  # latent pixels per frame, drawn per sprite
MASK_GAIN = 2.0
CLASS_RADIUS = 1.5
TEXTURE_CHANNELS = (4, 5)
MASK_CHANNELS = (6, 7)
CODE_CHANNELS = ((8, 9, 10, 11), (12, 13, 14, 15))
# texture frequencies (kx, ky) of channel 4 and channel 5 per family.  kx is 1 everywhere, so the
# texture drifts with exactly the phase of channels 0/1 (a tiny model renders that reliably); its
# ky term runs on y - q, the phase of channels 2/3, so a token can draw the texture from what it
# reads there (tied to the absolute row, it could only be copied: RoPE gives no absolute position)
FAMILIES = (
    ((1, 0), (1, 1)),
    ((1, 1), (1, 2)),
    ((1, 2), (1, 3)),
    ((1, 3), (1, -1)),
)
# texture phases (r4, r5) per family: fixed, so the background of the first chunk is fully
# determined by the family (prompt) plus two random offsets (q, drift) the model can infer
FAMILY_PHASES = ((0.3, 2.1), (1.7, 4.0), (3.3, 0.9), (5.2, 2.8))
# identity details: a small codebook, so a sample commits to one of them (a flow model trained
# with a regression loss would blur a continuous detail it has to invent)
DETAILS = ((0.8, 0.8), (0.8, -0.8), (-0.8, 0.8), (-0.8, -0.8))
PROMPT_LENGTH = 4
MIN_ABSENCE, MAX_ABSENCE = 40, 120  # latent frames a sprite stays out of frame
FIRST_ENTRY = (20.0, 100.0)  # sprite B enters for the first time in this frame range
LAST_RETURN = 225.0  # sprite B is back on screen at least once before this frame


@dataclass(frozen=True)
class Sprite:
    """One sprite: identity (class + detail) and its motion parameters."""

    cls: int
    detail: tuple[float, float]
    speed: float  # latent pixels per frame along its horizontal loop
    direction: int  # +1 moves right, -1 moves left
    enter: float  # frame at which its leading edge first touches the frame (may be < 0)
    absence: int  # frames spent fully out of frame per lap
    y_center: float
    y_amp: float
    y_period: float
    y_phase: float

    def code(self) -> np.ndarray:
        """The 4-number identity code rendered into the sprite's code channels."""
        a = 2 * math.pi * self.cls / NUM_CLASSES
        return np.array(
            [CLASS_RADIUS * math.cos(a), CLASS_RADIUS * math.sin(a), *self.detail], dtype=np.float64
        )

    def loop_length(self) -> float:
        return SIZE + SPRITE_SIZE + self.speed * self.absence

    def crossing_frames(self) -> float:
        """Frames from entering the frame to having left it."""
        return (SIZE + SPRITE_SIZE) / self.speed

    def center(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sprite centre ``(x, y)`` at frames ``t`` (x may lie outside the frame).

        Before ``enter`` the loop coordinate is negative, i.e. the sprite waits outside the
        frame on the side it enters from; afterwards it loops (cross, stay out, come back).
        """
        raw = self.speed * (np.asarray(t, dtype=np.float64) - self.enter)
        u = np.where(raw < 0, raw, np.mod(raw, self.loop_length()))
        x = -SPRITE_SIZE / 2 + u if self.direction > 0 else SIZE + SPRITE_SIZE / 2 - u
        y = self.y_center + self.y_amp * np.sin(2 * math.pi * t / self.y_period + self.y_phase)
        return x, y


@dataclass(frozen=True)
class Scene:
    """Everything that defines one video of the world."""

    family: int
    q: float  # vertical wave offset (layout)
    r4: float  # texture phases (layout)
    r5: float
    drift0: float
    drift_speed: float  # latent pixels per frame
    sprites: tuple[Sprite | None, ...]  # one entry per slot, None = slot empty

    @property
    def classes(self) -> tuple[int | None, ...]:
        return tuple(None if s is None else s.cls for s in self.sprites)


@dataclass
class FrameParams:
    """Per-frame world state, arrays over frames ``F`` (and slots ``S = 2``).

    ``pos`` is the sprite centre in latent pixels (x, y); ``code`` the 4-number identity code.
    Slots that are empty have ``present == False``; their other fields are ignored.
    """

    shift: np.ndarray  # [F] drift s
    q: np.ndarray  # [F]
    r4: np.ndarray  # [F]
    r5: np.ndarray  # [F]
    family: np.ndarray  # [F] int
    present: np.ndarray  # [F, S] bool
    pos: np.ndarray  # [F, S, 2]
    code: np.ndarray  # [F, S, 4]

    @property
    def visibility(self) -> np.ndarray:
        """Fraction of each sprite's area inside the frame, ``[F, S]`` (0 when absent)."""
        vis = _overlap_1d(self.pos[..., 0]) / SPRITE_SIZE
        return np.where(self.present, vis, 0.0)


def _overlap_1d(center: np.ndarray) -> np.ndarray:
    """Length of ``[c - w/2, c + w/2]`` inside ``[0, SIZE]``."""
    lo = np.clip(center - SPRITE_SIZE / 2, 0, SIZE)
    hi = np.clip(center + SPRITE_SIZE / 2, 0, SIZE)
    return hi - lo


def _box_profile(center: np.ndarray) -> np.ndarray:
    """Per-pixel coverage ``[..., SIZE]`` of a box of side SPRITE_SIZE centred at ``center``."""
    j = np.arange(SIZE, dtype=np.float64)
    c = np.asarray(center, dtype=np.float64)[..., None]
    lo = np.maximum(c - SPRITE_SIZE / 2, j)
    hi = np.minimum(c + SPRITE_SIZE / 2, j + 1)
    return np.clip(hi - lo, 0.0, 1.0)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def sample_sprite(
    rng: np.random.Generator, slot: int, cls: int | None = None, detail: int | None = None
) -> Sprite:
    """Draw one sprite for ``slot`` (0: upper band, on screen at frame 0; 1: lower band, enters
    between frames 20 and 100).  ``detail`` pins the codebook index."""
    speed = float(rng.uniform(*SPRITE_SPEED))
    cross = (SIZE + SPRITE_SIZE) / speed
    if slot == 0:
        enter = -float(rng.uniform(0.1, 0.5)) * cross  # part-way across at frame 0
    else:
        enter = float(rng.uniform(*FIRST_ENTRY))
    longest = min(MAX_ABSENCE, int(LAST_RETURN - enter - cross))  # >= 40 for every draw
    absence = int(rng.integers(MIN_ABSENCE, longest + 1))
    y_amp = float(rng.uniform(0.0, 0.6))
    base = 2.5 if slot == 0 else 5.5
    return Sprite(
        cls=int(rng.integers(NUM_CLASSES)) if cls is None else int(cls),
        detail=DETAILS[int(rng.integers(len(DETAILS))) if detail is None else int(detail)],
        speed=speed,
        direction=int(rng.choice([-1, 1])),
        enter=enter,
        absence=absence,
        y_center=float(base + rng.uniform(-0.5, 0.5)),
        y_amp=y_amp,
        y_period=float(rng.uniform(30, 60)),
        y_phase=float(rng.uniform(0, 2 * math.pi)),
    )


def sample_scene(
    seed: int | np.random.Generator,
    num_sprites: int | None = None,
    family: int | None = None,
    classes: tuple[int, ...] | None = None,
) -> Scene:
    """Draw a random scene; ``family``/``classes`` pin what the prompt names."""
    rng = _rng(seed)
    if num_sprites is None:
        num_sprites = len(classes) if classes is not None else int(rng.integers(1, MAX_SPRITES + 1))
    check_int("num_sprites", num_sprites, 1, MAX_SPRITES)
    if classes is not None and len(classes) != num_sprites:
        raise ValueError(f"classes {classes!r} must name {num_sprites} sprite(s)")
    for c in classes or ():
        check_int("sprite class", c, 0, NUM_CLASSES - 1)
    if family is not None:
        check_int("family", family, 0, NUM_FAMILIES - 1)
    fam = int(rng.integers(NUM_FAMILIES)) if family is None else int(family)
    details = rng.permutation(len(DETAILS))  # the two sprites of a video never share a detail
    sprites = tuple(
        sample_sprite(rng, slot, None if classes is None else classes[slot], int(details[slot]))
        if slot < num_sprites else None
        for slot in range(MAX_SPRITES)
    )
    speed = float(rng.uniform(0.03, 0.06) * rng.choice([-1, 1]))
    return Scene(
        family=fam,
        q=float(rng.uniform(0, SIZE)),
        r4=FAMILY_PHASES[fam][0],
        r5=FAMILY_PHASES[fam][1],
        drift0=float(rng.uniform(0, SIZE)),
        drift_speed=speed,
        sprites=sprites,
    )


def frame_params(scene: Scene, start: int, num_frames: int) -> FrameParams:
    """Ground truth of frames ``start .. start + num_frames - 1``."""
    if num_frames < 1 or start < 0:
        raise ValueError(f"need start >= 0 and num_frames >= 1, got {start!r}, {num_frames!r}")
    t = np.arange(start, start + num_frames, dtype=np.float64)
    f = num_frames
    present = np.zeros((f, MAX_SPRITES), dtype=bool)
    pos = np.zeros((f, MAX_SPRITES, 2))
    code = np.zeros((f, MAX_SPRITES, 4))
    for slot, sp in enumerate(scene.sprites):
        if sp is None:
            continue
        present[:, slot] = True
        x, y = sp.center(t)
        pos[:, slot, 0], pos[:, slot, 1] = x, y
        code[:, slot] = sp.code()
    return FrameParams(
        shift=np.mod(scene.drift0 + scene.drift_speed * t, SIZE),
        q=np.full(f, scene.q),
        r4=np.full(f, scene.r4),
        r5=np.full(f, scene.r5),
        family=np.full(f, scene.family, dtype=np.int64),
        present=present,
        pos=pos,
        code=code,
    )


def render_params(p: FrameParams) -> torch.Tensor:
    """Latent frames ``[16, F, 8, 8]`` (float32) from per-frame parameters."""
    f = p.shift.shape[0]
    yy, xx = np.meshgrid(np.arange(SIZE, dtype=np.float64), np.arange(SIZE, dtype=np.float64), indexing="ij")
    out = np.zeros((CHANNELS, f, SIZE, SIZE))
    xs = xx[None] - p.shift[:, None, None]  # drifted x, [F, 8, 8]
    ax = 2 * math.pi * xs / SIZE
    out[0], out[1] = np.cos(ax), np.sin(ax)
    ys = yy[None] - p.q[:, None, None]  # y from the layout offset, [F, 8, 8]
    ay = 2 * math.pi * ys / SIZE
    out[2], out[3] = np.cos(ay), np.sin(ay)
    fam = np.asarray(FAMILIES, dtype=np.float64)[p.family]  # [F, 2, 2]
    for k, (ch, r) in enumerate(zip(TEXTURE_CHANNELS, (p.r4, p.r5))):
        kx = fam[:, k, 0][:, None, None]
        ky = fam[:, k, 1][:, None, None]
        out[ch] = np.cos(2 * math.pi * (kx * xs + ky * ys) / SIZE + r[:, None, None])
    shown = p.visibility >= REVEAL  # [F, S]: where the detail is unveiled
    for slot in range(MAX_SPRITES):
        px = _box_profile(p.pos[:, slot, 0])  # [F, 8]
        py = _box_profile(p.pos[:, slot, 1])
        m = py[:, :, None] * px[:, None, :] * p.present[:, slot, None, None]  # [F, 8(y), 8(x)]
        out[MASK_CHANNELS[slot]] = MASK_GAIN * m
        for i, ch in enumerate(CODE_CHANNELS[slot]):
            veil = shown[:, slot, None, None] if i >= 2 else True  # code numbers 2, 3: the detail
            out[ch] = m * p.code[:, slot, i, None, None] * veil
    return torch.from_numpy(out).float()


def render(scene: Scene, start: int = 0, num_frames: int = 21) -> torch.Tensor:
    """Render frames ``start ..`` of ``scene`` as latents ``[16, F, 8, 8]``."""
    return render_params(frame_params(scene, start, num_frames))


# ----------------------------------------------------------------------------- prompts
def prompt_embedding(
    family: int, classes: tuple[int | None, ...], text_dim: int = 32, length: int = PROMPT_LENGTH
) -> torch.Tensor:
    """The "text" of a scene: ``[1, length, text_dim]`` naming the family and sprite classes.

    Token 0 names the background family, token 1 + slot the class of each sprite (an empty
    slot gets a dedicated "absent" code); remaining tokens are zero padding, like a T5 prompt.
    A fixed random orthogonal basis (seed 0) spreads the one-hot codes over all dims so the
    embedding looks dense to the model.
    """
    need = 1 + NUM_FAMILIES + MAX_SPRITES + NUM_CLASSES + 1
    if text_dim < need:
        raise ValueError(f"text_dim must be >= {need} to encode a scene, got {text_dim!r}")
    if length < 1 + MAX_SPRITES:
        raise ValueError(f"prompt length must be >= {1 + MAX_SPRITES}, got {length!r}")
    classes = tuple(classes) + (None,) * (MAX_SPRITES - len(classes))
    if len(classes) != MAX_SPRITES or all(c is None for c in classes):
        raise ValueError(f"classes must name 1 or 2 sprites, got {classes!r}")
    check_int("family", family, 0, NUM_FAMILIES - 1)
    e = torch.zeros(length, text_dim, dtype=torch.float64)
    e[0, 0] = 1.0
    e[0, 1 + family] = 1.0
    for slot, c in enumerate(classes):
        row = 1 + slot
        e[row, 1 + NUM_FAMILIES + slot] = 1.0
        if c is None:
            e[row, need - 1] = 1.0
        else:
            check_int("sprite class", c, 0, NUM_CLASSES - 1)
            e[row, 1 + NUM_FAMILIES + MAX_SPRITES + c] = 1.0
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(text_dim, text_dim, generator=g, dtype=torch.float64))
    return (e @ basis.T * math.sqrt(text_dim) / 2).float()[None]


def scene_prompt(scene: Scene, text_dim: int = 32, length: int = PROMPT_LENGTH) -> torch.Tensor:
    """:func:`prompt_embedding` of a scene."""
    return prompt_embedding(scene.family, scene.classes, text_dim, length)


# ----------------------------------------------------------------------------- viewing
_RGB = np.zeros((3, CHANNELS))
_RGB[:, 0] = (0.10, 0.06, 0.02)
_RGB[:, 2] = (0.02, 0.06, 0.10)
_RGB[:, 4] = (0.05, 0.08, 0.03)
_RGB[:, 5] = (0.06, 0.02, 0.08)
for _slot in range(MAX_SPRITES):
    _RGB[:, MASK_CHANNELS[_slot]] = 0.12
    c0, c1, c2, c3 = CODE_CHANNELS[_slot]
    _RGB[:, c0] = (0.20, -0.05, -0.15)
    _RGB[:, c1] = (-0.10, 0.20, -0.10)
    _RGB[:, c2] = (0.00, -0.08, 0.15)
    _RGB[:, c3] = (0.08, 0.08, -0.08)
RGB_MATRIX = _RGB  # fixed latent -> RGB map (rgb = 0.4 + M @ z)


def to_rgb(latents: torch.Tensor, scale: int = 8) -> np.ndarray:
    """uint8 frames ``[F, 8*scale, 8*scale, 3]`` from latents ``[16, F, h, w]`` (or batch 1)."""
    z = latents.detach().cpu().double().numpy()
    if z.ndim == 5:
        if z.shape[0] != 1:
            raise ValueError(f"to_rgb takes one video, got batch {z.shape[0]}")
        z = z[0]
    if z.ndim != 4 or z.shape[0] != CHANNELS:
        raise ValueError(f"latents must be [16, F, h, w], got {tuple(latents.shape)}")
    rgb = 0.4 + np.einsum("rc,cfyx->fyxr", RGB_MATRIX, z)
    img = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    return img.repeat(scale, axis=1).repeat(scale, axis=2)
