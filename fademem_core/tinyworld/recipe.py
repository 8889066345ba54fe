"""What a tiny-world training run is: its options, validated, and the command that reproduces it."""
from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path

import torch

from .distill import GEN_STEPS
from .losses import CONTEXT_NOISE, FIRST_WINDOW, channel_weight
from .returns import check_return_window
from .spec import CHUNK, CLIP_FRAMES, SAMPLER, SAMPLER_STEPS, SHIFT

TRAIN_POLICIES = ("full", "fademem", "teacher_forcing", "window")
MODULE = "fademem_core.tinyworld.train"


@dataclass(frozen=True)
class Recipe:
    """The options of one training run (:func:`~.loop.run_training`), validated on construction.

    Parameters
    ----------
    episodes, minutes:
        Exactly ``episodes`` episodes (reproducible), or a time budget: the first episode is
        timed and fixes the episode count (:meth:`fixed` then records it).  At least one.
    seed:
        Seeds the initialisation, the scenes (numpy) and every noise draw (one torch generator).
    batch, lr, ema_decay:
        Clips per episode; AdamW's peak learning rate (:func:`~.loop.lr_at`); the decay of the
        weight average that is saved.
    policy:
        The memory in the loop (:meth:`memory`): ``full`` (the base, LongLive/Self-Forcing's
        full context), ``fademem`` (FadeMem-FT, the paper's light fine-tuning with the FadeMem
        memory), ``teacher_forcing`` (no cache: one masked full-sequence pass per clip) or
        ``window`` (DMD's teacher: a bidirectional flow model of true ``frames``-frame windows,
        :func:`~.distill.window_loss`; not a causal generator).
    init:
        Start from these weights (fine-tuning or a further stage) instead of a fresh model.
    frames:
        Latent frames per ground-truth clip, a multiple of the chunk (3).
    threads:
        torch threads for the run (None: leave as is); the record holds the count used.
    window, memory_frames:
        Teacher forcing on a window of ``window`` frames of each clip, seeing ``memory_frames``
        frames of the clip's past before it (:func:`~.losses.memory_window`).
    corrupt:
        Teacher forcing: the share of chunks whose context is the model's own one-step estimate.
    own:
        Memory in the loop: the share of chunks committed as the model's own Euler sample
        (Self-Forcing's point, the loss still against the world's truth).
    context_noise:
        The top sigma of the light noise on committed / context chunks (uniform up to it,
        exactly 0 for 30 %, :func:`~.losses._context_noise`), in [0, 1).
    texture_weight:
        The loss weight of the texture planes (:func:`~.losses.channel_weight`; the layout 1,
        the sprites 4), > 0.
    first_window:
        The share of teacher-forcing windows (``window``) or DMD rollouts (``teacher``) that
        start at frame 0, where the chunk is drawn from the prompt alone, in [0, 1].
    first_steps:
        Memory in the loop: the chance after each chunk's step of one more step on the first
        chunk alone (:func:`~.loop.first_chunk_step`), in [0, 1]; 0 (default) takes none.
    return_windows:
        Teacher forcing on windows: the share of steps whose windows sit at a sprite's return
        (:func:`~.returns.return_window`, the same ``window`` and ``memory_frames``), in [0, 1].
        Memory in the loop (``full``/``fademem``, no ``teacher``): the share of episodes that are
        *return walks* (:func:`~.loop.return_walk`): the true past up to a return committed
        through the policy without a loss, then the chunk before the return and the return's
        own chunk trained against that memory.
    """

    episodes: int | None = None
    minutes: float | None = None
    seed: int = 0
    batch: int = 16
    lr: float = 1e-3
    policy: str = "full"
    init: Path | None = None
    frames: int = CLIP_FRAMES
    threads: int | None = None
    ema_decay: float = 0.999
    window: int | None = None
    memory_frames: int = 0
    corrupt: float = 0.0
    own: float = 0.0
    context_noise: float = CONTEXT_NOISE
    teacher: Path | None = None
    rollout: int | None = None
    texture_weight: float = 1.0
    first_window: float = FIRST_WINDOW
    first_steps: float = 0.0
    return_windows: float = 0.0

    def __post_init__(self) -> None:
        self._check_length()
        self._check_shares()
        if self.init is not None and not Path(self.init).is_file():
            raise ValueError(f"init weights not found: {str(self.init)!r}")
        if self.policy not in TRAIN_POLICIES:
            raise ValueError(f"policy must be one of {TRAIN_POLICIES}, got {self.policy!r}")
        self._check_distillation()

    def _check_length(self) -> None:
        episodes, minutes, frames, window = self.episodes, self.minutes, self.frames, self.window
        if episodes is None and minutes is None:
            raise ValueError("give --episodes or --minutes")
        if episodes is not None and episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes!r}")
        if minutes is not None and minutes <= 0:
            raise ValueError(f"minutes must be > 0, got {minutes!r}")
        if frames < CHUNK or frames % CHUNK:
            raise ValueError(f"frames must be a positive multiple of {CHUNK}, got {frames!r}")
        if window is not None and (self.policy != "teacher_forcing" or window < CHUNK or window % CHUNK
                                   or window > frames):
            raise ValueError(f"window needs --policy teacher_forcing and a multiple of {CHUNK} in "
                             f"[{CHUNK}, frames={frames}], got {window!r} with policy {self.policy!r}")

    def _check_shares(self) -> None:
        corrupt, own, memory = self.corrupt, self.own, self.memory_frames
        if not 0.0 <= corrupt <= 1.0 or (corrupt and self.policy != "teacher_forcing"):
            raise ValueError(f"corrupt must be in [0, 1] with --policy teacher_forcing, got {corrupt!r}")
        if not 0.0 <= own <= 1.0 or (own and self.policy == "teacher_forcing"):
            raise ValueError(f"own must be in [0, 1] with a memory in the loop (--policy full/fademem), got {own!r}")
        if memory < 0 or (memory and self.window is None):
            raise ValueError(f"memory frames must be >= 0 and need a window, got {memory!r}")
        if not 0.0 <= self.context_noise < 1.0:
            raise ValueError(f"context noise must be in [0, 1), got {self.context_noise!r}")
        channel_weight(self.texture_weight)  # raises, naming the value
        first = self.first_window
        if not 0.0 <= first <= 1.0 or (first != FIRST_WINDOW and self.window is None and self.teacher is None):
            raise ValueError(f"first window must be in [0, 1] with --window (teacher forcing) or --teacher (DMD), "
                             f"got {first!r}")
        steps = self.first_steps
        if not 0.0 <= steps <= 1.0 or (steps and not self.walks):
            raise ValueError(f"first steps must be in [0, 1] with a memory in the loop (--policy full/fademem, "
                             f"no --teacher), got {steps!r} with policy {self.policy!r}")
        share = self.return_windows
        if not 0.0 <= share <= 1.0 or (share and self.window is None and not self.walks):
            raise ValueError(f"return windows must be in [0, 1] with --window (teacher forcing) or a memory in "
                             f"the loop (--policy full/fademem, no --teacher), got {share!r} with policy "
                             f"{self.policy!r}")
        if share:
            check_return_window(self.window or 2 * CHUNK, self.frames)

    def _check_distillation(self) -> None:
        teacher, rollout, frames = self.teacher, self.rollout, self.frames
        if self.policy == "window" and (self.window is not None or self.own or teacher is not None):
            raise ValueError("--policy window trains a teacher on true windows of --frames frames; "
                             "it takes no --window, --own or --teacher")
        if (teacher is None) != (rollout is None):
            raise ValueError(f"--teacher and --rollout go together, got teacher {teacher!r}, rollout {rollout!r}")
        if teacher is None:
            return
        if self.policy not in ("full", "fademem") or self.own or self.init is None:
            raise ValueError(f"--teacher distils a trained generator (--init) with --policy full or fademem "
                             f"and no --own, got policy {self.policy!r}, own {self.own!r}, init {self.init!r}")
        if not Path(teacher).is_file():
            raise ValueError(f"teacher weights not found: {str(teacher)!r}")
        if rollout < frames or rollout % CHUNK or rollout > CLIP_FRAMES:
            raise ValueError(f"rollout must be a multiple of {CHUNK} in [frames={frames}, {CLIP_FRAMES}], "
                             f"got {rollout!r}")

    def channel_weight(self) -> torch.Tensor:
        """The loss weight per channel of this run (:func:`~.losses.channel_weight`)."""
        return channel_weight(self.texture_weight)

    def sampler(self) -> dict:
        """What the weights are trained to be sampled with (the record's ``"sampler"``): the
        few-step sampler for a distilled generator, Euler for a flow model."""
        if self.teacher is not None:
            return {"name": "few_step", "steps": GEN_STEPS, "shift": SHIFT}
        return {"name": SAMPLER, "steps": SAMPLER_STEPS, "shift": SHIFT}

    @property
    def walks(self) -> bool:
        """Whether the episodes walk clips chunk by chunk with a memory in the loop
        (:func:`~.loop.walk_episode`: ``full`` or ``fademem``, not distilling)."""
        return self.policy in ("full", "fademem") and self.teacher is None

    def memory(self):
        """The memory in the training loop: ``full`` (base), ``fademem`` (FadeMem-FT: 12, 0.3,
        anchor) or ``teacher_forcing`` / ``window`` (no cache; None)."""
        from ..memory.policies import FadeMem, FullCache

        if self.policy in ("teacher_forcing", "window"):
            return None
        return FullCache() if self.policy == "full" else FadeMem(budget=12, beta=0.3, anchor=True)

    def fixed(self, episodes: int, threads: int) -> Recipe:
        """This recipe as the finished run it became: ``episodes`` exact, ``threads`` used."""
        return dataclasses.replace(self, episodes=episodes, minutes=None, threads=threads)

    def command(self, out: Path) -> str:
        """The command line that reproduces this (:meth:`fixed`) run, writing to ``out``.

        ``--context-noise``, ``--texture-weight``, ``--first-window``, ``--first-steps`` and
        ``--return-windows`` are written only when they are not the default, so commands
        recorded before the options existed read the same.
        Paths are shell-quoted (a path with a space still runs; a plain path is written as is)."""
        if self.episodes is None or self.threads is None:
            raise ValueError(f"a reproducing command needs episodes and threads fixed, got {self!r}")
        return (f"python -m {MODULE} --out {shlex.quote(str(out))} --episodes {self.episodes} --seed {self.seed} "
                f"--batch {self.batch} --lr {self.lr} --policy {self.policy} --frames {self.frames} "
                f"--threads {self.threads} --ema {self.ema_decay}"
                + (f" --window {self.window} --memory {self.memory_frames}" if self.window is not None else "")
                + (f" --corrupt {self.corrupt}" if self.corrupt else "") + (f" --own {self.own}" if self.own else "")
                + (f" --context-noise {self.context_noise}" if self.context_noise != CONTEXT_NOISE else "")
                + (f" --texture-weight {self.texture_weight}" if self.texture_weight != 1.0 else "")
                + (f" --first-window {self.first_window}" if self.first_window != FIRST_WINDOW else "")
                + (f" --first-steps {self.first_steps}" if self.first_steps else "")
                + (f" --return-windows {self.return_windows}" if self.return_windows else "")
                + (f" --teacher {shlex.quote(str(self.teacher))} --rollout {self.rollout}"
                   if self.teacher is not None else "")
                + (f" --init {shlex.quote(str(self.init))}" if self.init is not None else ""))

    def training(self, steps: int, final_loss: float | None, seconds: float) -> dict:
        """The JSON record's ``"training"`` part of this (:meth:`fixed`) run."""
        pol = self.memory()
        kind = {"teacher_forcing": "teacher_forcing (masked forward, no cache)",
                "window": "window teacher (bidirectional flow model, no cache)"}
        distilled = {} if self.teacher is None else {"teacher": Path(self.teacher).name, "rollout_frames": self.rollout}
        return {
            "clip_frames": self.frames, "chunk": CHUNK, "shift": SHIFT,
            "policy": kind[self.policy] if pol is None else repr(pol), **distilled,
            "window": self.window, "memory_frames": self.memory_frames, "corrupt": self.corrupt,
            "own_chunks": self.own, "init": None if self.init is None else Path(self.init).name,
            "episodes": self.episodes, "steps": steps, "batch": self.batch, "lr": self.lr, "seed": self.seed,
            "ema": self.ema_decay, "context_noise": self.context_noise,
            "texture_weight": self.texture_weight, "first_window": self.first_window,
            **({"first_steps": self.first_steps} if self.first_steps else {}),
            **({"return_windows": self.return_windows} if self.return_windows else {}),
            "final_loss": final_loss, "seconds": seconds,
            "threads": self.threads, "torch": torch.__version__,
        }
