"""Cache-policy and sampling options shared by ``demo`` and ``generate``."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..checks import CONTEXT_INPUTS, SAMPLER_CHOICES, check_beta, check_budget
from ..memory.policies import policy_from_name, policy_parameters
from ..memory.storage import OPERATORS
from ..memory.positions import POSITION_STRATEGIES
from ..model.recorded import read_record, sampler_record
from ..rollout.timesteps import check_steps, sampler_options, sampler_summary
from .common import CliError, checked, int_at_least, nonneg_float, positive_float

POLICY_CHOICES = ("fademem", "sink_window", "sliding_window", "full", "self_forcing",
                  "fademem_release", "infinity_rope", "memrope", "deep_forcing", "memflow")


def add_fademem_options(g: Any, prefix: str = "") -> None:
    """``--budget``, ``--beta`` and ``--no-anchor`` (help texts start with ``prefix``)."""
    g.add_argument("--budget", type=int_at_least(2), default=12,
                   help=f"{prefix}memory entries M, the anchor included (default 12)")
    g.add_argument("--beta", type=checked(float, check_beta, "beta"), default=0.3,
                   help=f"{prefix}distance warp in (0, 1]; smaller merges the far past harder "
                        f"(default 0.3)")
    g.add_argument("--no-anchor", dest="anchor", action="store_false",
                   help=f"{prefix}let the first frame be merged too")


def add_policy_options(p: argparse.ArgumentParser) -> None:
    """``--policy`` and every policy's parameters; an option left out takes the chosen
    policy's own default (a policy ignores the options it has no parameter for)."""
    g = p.add_argument_group("cache policy")
    g.add_argument("--policy", default="fademem", choices=POLICY_CHOICES,
                   help="KV memory policy (default fademem; the README's policy table "
                        "describes each)")
    add_fademem_options(g, prefix="fademem, fademem_release: ")
    g.add_argument("--operator", default="weighted_average",
                   choices=OPERATORS,
                   help="fademem: how a merged pair's K/V combine (default weighted_average)")
    g.add_argument("--positions", default=None, choices=POSITION_STRATEGIES + ("release",),
                   help="RoPE positions of memory entries (default: the policy's; absolute, "
                        "release for fademem_release, packed for infinity_rope and memrope, "
                        "sink_shifted for deep_forcing)")
    g.add_argument("--window", type=int_at_least(1), default=None,
                   help="frames a chunk sees, itself included: sliding_window (12), "
                        "self_forcing (21), sink_window besides the sink (9), infinity_rope "
                        "sink included (6), memflow sink included, bank not (12); deep_forcing: "
                        "frames' worth of tokens held between chunks, sink + compressed + "
                        "recent (16)")
    g.add_argument("--sink", type=int_at_least(0), default=None,
                   help="sink_window (3), infinity_rope (1), memrope (3), deep_forcing (10), "
                        "memflow (3): first frames kept forever")
    g.add_argument("--span-gamma", type=positive_float, default=None,
                   help="fademem_release: K/V merge weights span**gamma (0.5)")
    g.add_argument("--flush-keep", type=int_at_least(0), default=None,
                   help="infinity_rope: frames kept besides the sink at a prompt switch (2)")
    g.add_argument("--recent", type=int_at_least(0), default=None,
                   help="memrope: newest frames kept exactly besides the chunk (4); "
                        "deep_forcing: newest frames kept exactly, >= the chunk (4)")
    g.add_argument("--alpha-long", type=positive_float, default=None,
                   help="memrope: update rate of the slow moving average (0.01)")
    g.add_argument("--alpha-short", type=positive_float, default=None,
                   help="memrope: update rate of the fast moving average (0.1)")
    g.add_argument("--bank", type=int_at_least(0), default=None,
                   help="memflow: prototype frames kept by relevance to the prompt (3)")
    g.add_argument("--interval", type=int_at_least(1), default=None,
                   help="memflow: chunks per prototype frame (3)")


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--seed", type=int_at_least(0), default=0, help="random seed (default 0)")
    g.add_argument("--chunk", type=int_at_least(1), default=3,
                   help="latent frames generated per chunk (default 3)")
    g.add_argument("--sampler", choices=SAMPLER_CHOICES, default="auto",
                   help="auto (default): the sampler the weights were trained for when the JSON "
                        "beside the checkpoint records one (the embedded tiny_world weights: "
                        "Euler ODE, 12 steps, shift 5; --steps and --shift are then NOT used), "
                        "else few_step. few_step: the distilled generators' schedule (LongLive, "
                        "Self-Forcing); euler: the Euler ODE of a base flow model. few_step and "
                        "euler use --steps and --shift")
    g.add_argument("--steps", default=None,
                   help="comma-separated denoising timesteps before the shift "
                        "(default 1000,750,500,250)")
    g.add_argument("--shift", type=positive_float, default=None,
                   help="flow-matching timestep shift (default 5.0)")
    g.add_argument("--context-noise", type=nonneg_float, default=0.0,
                   help="timestep label of the clean pass that writes a chunk into memory "
                        "(default 0)")
    g.add_argument("--context-input", choices=CONTEXT_INPUTS, default="clean",
                   help="what that pass sees: the clean x0 (default, as Self-Forcing's and "
                        "LongLive's inference do) or x0 noised to --context-noise first (as "
                        "Self-Forcing's training rollout does; level on its 1000-step grid)")


def parse_steps(text: str) -> tuple[float, ...]:
    """``"1000,750,500,250"`` -> (1000.0, 750.0, 500.0, 250.0), validated by the rollout's
    :func:`~fademem_core.rollout.timesteps.check_steps` (ValueError: one line, status 2)."""
    try:
        steps = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CliError(f"--steps must be comma-separated numbers, got {text!r}") from None
    return tuple(check_steps(steps))


def sampling_kw(args: argparse.Namespace, checkpoint: Path) -> tuple[dict[str, Any], str]:
    """``generate``'s sampler, steps and shift from ``--sampler``/``--steps``/``--shift`` and the
    record beside ``checkpoint`` (the rule of
    :func:`~fademem_core.rollout.timesteps.sampler_options`), read before any weights, and one
    line saying what runs and where it comes from."""
    try:
        record = sampler_record(read_record(checkpoint), checkpoint.with_suffix(".json").name)
    except ValueError as e:
        raise CliError(str(e)) from None
    steps = None if args.steps is None else parse_steps(args.steps)
    kw = sampler_options(record, args.sampler, steps, args.shift)
    recorded = args.sampler == "auto" and record is not None
    line = sampler_summary(kw)
    if not recorded:
        return kw, line
    unused = [flag for flag, v in (("--steps", args.steps), ("--shift", args.shift)) if v is not None]
    note = (f"; {' and '.join(unused)} not used (pass --sampler few_step or euler to use them)"
            if unused else "")
    return kw, f"{line} (recorded with the weights{note})"


def build_policy(args: argparse.Namespace) -> Any:
    """The cache policy the options describe (validated by the policy classes): the options
    named like the policy's parameters, those left out at the policy's defaults."""
    if args.policy == "fademem":
        check_budget(args.budget, args.anchor)  # before any heavy work
    given = {name: getattr(args, name, None) for name in policy_parameters(args.policy)}
    return policy_from_name(args.policy, **{k: v for k, v in given.items() if v is not None})
