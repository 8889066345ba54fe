"""Train the tiny causal world model through the inference engine, the memory in the loop (CPU).

    python -m fademem_core.tinyworld.train --out fademem_core/weights/tiny_world.safetensors \\
        --episodes 60 --threads 2                                         # base (full memory)
    python -m fademem_core.tinyworld.train --out fademem_core/weights/tiny_world_ft.safetensors \\
        --init fademem_core/weights/tiny_world.safetensors --policy fademem --episodes 20 --lr 3e-4

One *episode* walks a batch of long ground-truth clips (240 latent frames) chunk by chunk with
the engine's own :class:`~fademem_core.model.CausalWan` and a KV cache built by the cache
policy, exactly as a rollout does.  Per chunk:

1. a noisy forward WITH gradient at one continuous noise level per clip (the flow-matching
   velocity target ``v = noise - x0``, sigma from the shifted-uniform law the Euler sampler
   visits, plus a uniform share), attending to the memory as it stands;
2. backward and an optimizer step (the memory carries no gradient, so each chunk is its own
   small step, as in FadeMem-FT's light fine-tuning);
3. the clean context pass under ``no_grad`` that commits the chunk to the memory (the policy
   decides what stays: the full cache keeps all 240 frames, so every relative distance the
   benchmark asks for is in the training distribution).

Two more kinds of run distil instead of regress (:mod:`.distill`, Self-Forcing's DMD):
``--policy window --frames 12`` trains the teacher, a bidirectional flow model of true
12-frame windows of the world (one step per episode); ``--teacher T --rollout R --init G``
then moves the generator ``G`` by DMD on its own few-step rollouts of up to ``R`` frames with
the ``--policy`` memory, matching their last ``--frames`` frames to ``T`` (one rollout per
episode; the generator steps every second episode, a critic every episode).  A distilled
generator's record names the few-step sampler it was trained for.

An EMA of the weights is saved with a JSON record (command, seed, threads, torch, final loss,
seconds).  ``--minutes`` times the first episode and fixes the episode count from it (the
JSON records it, so ``--episodes N`` reproduces the run); ``--episodes`` alone is exact.

The options are a :class:`~.recipe.Recipe` (validated before any work), the loops
:mod:`.loop`, the losses and noise laws :mod:`.losses`; this module is the command line, the
record and the writer.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..model.loading import save_model
from ..model.recorded import read_record
from . import world
from .loop import Run, run_training
from .recipe import TRAIN_POLICIES, Recipe
from .spec import CLIP_FRAMES, MODEL_CONFIG


def save_weights(transformer: torch.nn.Module, out: Path, info: dict) -> None:
    """Write the safetensors (the engine's writer, config in metadata) and the JSON record,
    atomically."""
    save_model(transformer, out, metadata={"trained_on": "fademem_core.tinyworld"})
    js = out.with_suffix(".json")
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, js)


def train(out: Path, recipe: Recipe) -> dict:
    """Run ``recipe``, write the weights and their record to ``out``; returns the record."""
    before = torch.get_num_threads()
    if recipe.threads is not None:
        torch.set_num_threads(recipe.threads)
    try:
        run = run_training(recipe)
        info = _record(out, recipe.fixed(run.episodes, torch.get_num_threads()), run)
        save_weights(run.weights, out, info)
        return info
    finally:
        torch.set_num_threads(before)


def _record(out: Path, recipe: Recipe, run: Run) -> dict:
    """The JSON record of a finished run (``recipe`` fixed): what, how to sample, how to redo."""
    recent = max(run.per_episode * min(run.episodes, 3), 25)
    return {
        "what": _what(recipe),
        "sampler": recipe.sampler(),
        "world": {
            "latent": [16, 8, 8], "pixels_equivalent": [64, 64], "classes": world.NUM_CLASSES,
            "families": world.NUM_FAMILIES, "max_sprites": world.MAX_SPRITES,
            "absence_frames": [world.MIN_ABSENCE, world.MAX_ABSENCE],
            "first_entry": list(world.FIRST_ENTRY), "prompt_length": world.PROMPT_LENGTH,
            "detail_reveal": world.REVEAL, "sprite_speed": list(world.SPRITE_SPEED),
        },
        "config": MODEL_CONFIG,
        "training": recipe.training(len(run.losses), float(np.mean(run.losses[-recent:])) if run.losses else None,
                                    run.seconds),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": recipe.command(out),
        # a fine-tune or continued run: how its starting weights were made
        "init_record": None if recipe.init is None else _read_record(Path(recipe.init)),
        "parameters": sum(p.numel() for p in run.weights.parameters()),
    }


def _what(recipe: Recipe) -> str:
    """The record's one-line description of what the run made."""
    pol = recipe.memory()
    if recipe.policy == "window":
        return (f"DMD's teacher for fademem_core.tinyworld: a bidirectional flow model of true "
                f"{recipe.frames}-frame windows (diffusers WanTransformer3DModel, not a causal generator)")
    if recipe.teacher is not None:
        return ("tiny causal Wan (diffusers WanTransformer3DModel), a few-step generator distilled on "
                f"fademem_core.tinyworld by DMD on its own rollouts with {pol!r} memory")
    walks = (f", {recipe.return_windows:g} of the episodes walks to a sprite's return (the true past "
             "committed, the two chunks at the return trained)") if recipe.walks and recipe.return_windows else ""
    return ("tiny causal Wan (diffusers WanTransformer3DModel), a base flow model trained on "
            "fademem_core.tinyworld " + ("by teacher forcing (masked full-sequence pass)" if pol is None
                                         else f"through the engine with {pol!r} memory in the loop" + walks))


def _read_record(weights: Path) -> dict | None:
    """How the starting weights were made, from their record; None when there is none or it is
    unreadable (read after the run: the trained weights are written regardless)."""
    try:
        rec = read_record(weights)
    except ValueError:
        return None
    return {k: rec.get(k) for k in ("command", "training", "init_record")} if rec else None


def parser() -> argparse.ArgumentParser:
    """The command line (:meth:`~.recipe.Recipe.command` writes it back)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output .safetensors path")
    ap.add_argument("--episodes", type=int, default=None, help="exact number of episodes (reproducible)")
    ap.add_argument("--minutes", type=float, default=None, help="time budget; fixes the episode count after one")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--policy", default="full", choices=TRAIN_POLICIES, help="memory in the loop")
    ap.add_argument("--init", type=Path, default=None, help="start from these weights (fine-tuning)")
    ap.add_argument("--frames", type=int, default=CLIP_FRAMES, help="latent frames per clip")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (recorded)")
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    ap.add_argument("--window", type=int, default=None,
                    help="teacher forcing on a window of this many frames of each clip (default: whole clip)")
    ap.add_argument("--memory", type=int, default=0,
                    help="with --window: frames of the clip's past before the window every chunk sees")
    ap.add_argument("--corrupt", type=float, default=0.0,
                    help="teacher forcing: share of chunks whose context is the model's own one-step estimate")
    ap.add_argument("--own", type=float, default=0.0,
                    help="memory in the loop: share of chunks committed as the model's own sample")
    ap.add_argument("--context-noise", type=float, default=Recipe.context_noise,
                    help="top sigma of the light noise on committed/context chunks (uniform up to it, "
                         "0 for 30 %%), in [0, 1)")
    ap.add_argument("--texture-weight", type=float, default=Recipe.texture_weight,
                    help="loss weight of the texture channels 4, 5 (layout 1, sprites 4); > 0")
    ap.add_argument("--first-window", type=float, default=Recipe.first_window,
                    help="share of --window windows or --teacher rollouts that start at frame 0 "
                         "(drawn from the prompt alone), in [0, 1]")
    ap.add_argument("--first-steps", type=float, default=Recipe.first_steps,
                    help="memory in the loop: chance after each chunk of one more step on the first "
                         "chunk alone (from the prompt), in [0, 1]")
    ap.add_argument("--return-windows", type=float, default=Recipe.return_windows,
                    help="with --window: share of steps whose windows sit at a sprite's return "
                         "(the far past in --memory), in [0, 1]")
    ap.add_argument("--teacher", type=Path, default=None,
                    help="distil (DMD on the generator's own rollouts) against this window teacher "
                         "(weights trained with --policy window); needs --init and --rollout")
    ap.add_argument("--rollout", type=int, default=None,
                    help="with --teacher: the longest own rollout in latent frames (its last --frames are matched)")
    return ap


def parse(argv: list[str] | None = None) -> tuple[Path, Recipe]:
    """The output path and the recipe of a command line (argparse errors exit, as usual)."""
    ap = parser()
    a = ap.parse_args(argv)
    if a.out.suffix != ".safetensors":
        ap.error(f"--out must end in .safetensors, got {str(a.out)!r}")
    return a.out, Recipe(episodes=a.episodes, minutes=a.minutes, seed=a.seed, batch=a.batch, lr=a.lr,
                         policy=a.policy, init=a.init, frames=a.frames, threads=a.threads, ema_decay=a.ema,
                         window=a.window, memory_frames=a.memory, corrupt=a.corrupt, own=a.own,
                         context_noise=a.context_noise, teacher=a.teacher, rollout=a.rollout,
                         texture_weight=a.texture_weight, first_window=a.first_window,
                         first_steps=a.first_steps, return_windows=a.return_windows)


def main(argv: list[str] | None = None) -> int:
    out, recipe = parse(argv)
    info = train(out, recipe)
    print(json.dumps(info["training"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
