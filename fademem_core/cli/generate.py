"""``fademem generate``: the standalone text-to-video path (no ComfyUI).

Causal Wan checkpoint (+ LoRA) for the DiT; umT5 text encoder, tokenizer and Wan VAE from a
local diffusers-format Wan2.1-T2V-1.3B folder (``--wan-dir``).  Prompts are encoded first and
the text encoder is freed before the DiT is loaded; every finished chunk is decoded by the
streaming VAE and written to the mp4 at once, so memory stays flat however long the video.
With ``--prompt-file`` each line becomes its own video, named by its index, and the prompts are
sharded over the processes of a ``torchrun`` launch.  ``--continue-from`` / ``--start-image``
encode a clip or a picture with the streaming VAE encoder and prime the memory with it.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from .common import (CliError, Progress, existing_dir, existing_file, finite_float, int_at_least,
                     multiple_of_16, positive_float, writable_dir, writable_file)
from ..checks import SWITCH_MODES, WEIGHT_CHOICES
from ..rollout.batch import output_name
from ..rollout.prompts import read_prompt_file, read_schedule_file, schedule_to_latent_frames
from ..wan import FPS, latent_frames_for_seconds, video_frames_for_latents
from .journal import Journal, check_journal, fingerprint, journal_path, read_journal, usable_frames
from .options import add_policy_options, add_sampling_options, build_policy, sampling_kw



def register(sub: Any) -> None:
    p = sub.add_parser(
        "generate", help="text-to-video with a causal Wan checkpoint, decoded while it samples",
        description="Generate videos with a causal Wan2.1 checkpoint under a KV cache policy. "
                    "Decodes streaming: each chunk goes through the Wan VAE and into the mp4 "
                    "as soon as it is sampled.")
    m = p.add_argument_group("model")
    m.add_argument("--checkpoint", required=True,
                   help="causal Wan DiT: .safetensors or a training .pt (Self-Forcing, LongLive)")
    m.add_argument("--lora", default=None, help="LoRA file (LongLive lora.pt, FadeMem-FT)")
    m.add_argument("--lora-strength", type=finite_float, default=1.0,
                   help="LoRA strength (default 1)")
    m.add_argument("--lora-alpha", type=positive_float, default=None,
                   help="LoRA alpha (default: from the file, else a PEFT adapter_config.json "
                        "beside it, else alpha = rank, right for LongLive's lora.pt)")
    m.add_argument("--weights", choices=WEIGHT_CHOICES, default="auto",
                   help="training .pt holding generator_ema and generator: which to load "
                        "(default auto: what the file's project loads, Self-Forcing ema, "
                        "LongLive generator; ema when it cannot be told)")
    m.add_argument("--wan-dir", required=True,
                   help="diffusers-format Wan2.1-T2V-1.3B folder (text_encoder/, tokenizer/, vae/)")
    m.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None,
                   help="weights dtype (default bf16 on CUDA, fp32 on CPU)")
    m.add_argument("--device", default=None,
                   help="cuda, cuda:1, cpu... (default: this rank's GPU if any, else cpu)")
    t = p.add_argument_group("prompts (one of)")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="one prompt -> one video (--out)")
    src.add_argument("--prompt-file", help="one prompt per line -> one video each (--out-dir)")
    src.add_argument("--schedule", help="START_SECONDS|prompt lines -> one video with prompt "
                                        "switches (--out)")
    t.add_argument("--switch", choices=SWITCH_MODES, default="auto",
                   help="memory at a prompt switch: longlive (LongLive's re-cache, global_sink "
                        "on), longlive_resink (global_sink off), recache (re-run what the memory "
                        "holds exactly), keep; auto (default): longlive for --policy "
                        "sink_window, recache otherwise")
    v = p.add_argument_group("video")
    length = v.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=positive_float, default=None,
                        help="length in seconds at 16 fps, rounded up to whole chunks (default 5: "
                             "21 latent frames = 81 video frames); with --continue-from or "
                             "--start-image the new seconds")
    length.add_argument("--frames", type=int_at_least(1), default=None,
                        help="length in latent frames (1 latent frame = 4 video frames)")
    v.add_argument("--height", type=multiple_of_16, default=480, help="default 480")
    v.add_argument("--width", type=multiple_of_16, default=832, help="default 832")
    _add_output_options(v)
    _add_input_options(p)
    add_policy_options(p)
    add_sampling_options(p)
    p.set_defaults(func=run)


def _add_output_options(v: Any) -> None:
    """--out / --out-dir, --overwrite, --keep-partial (in the video group)."""
    v.add_argument("--out", default=None, help="output video (.mp4) for --prompt / --schedule "
                                               "(default fademem_out/video.mp4)")
    v.add_argument("--out-dir", default=None,
                   help="output folder for --prompt-file (default fademem_out); videos are "
                        "named 0000.mp4, 0001.mp4, ... by prompt index")
    v.add_argument("--overwrite", action="store_true",
                   help="--prompt-file: redo prompts whose video exists (default: skip them, "
                        "so a rerun resumes); a single --out video is always replaced")
    v.add_argument("--keep-partial", action=argparse.BooleanOptionalAction, default=True,
                   help="when a run stops early (Ctrl-C, an error, out of memory) close the "
                        "frames made so far into NAME.partial.mp4 beside the video (default); "
                        "--no-keep-partial removes them")


def _add_input_options(p: argparse.ArgumentParser) -> None:
    """--continue-from / --start-image, --resume, --include-input."""
    i = p.add_argument_group("continue a video, start from an image, resume (optional)")
    start = i.add_mutually_exclusive_group()
    start.add_argument("--continue-from", metavar="VIDEO", default=None,
                       help="extend this clip: it is resized/cropped to --width x --height, "
                            "resampled to 16 fps, encoded by the Wan VAE and primes the memory; "
                            "the new frames follow it")
    start.add_argument("--start-image", metavar="IMAGE", default=None,
                       help="start from this picture (.png, .jpg, ...): it becomes latent frame 0")
    i.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same command where it stopped: its "
                        "finished chunks were kept in .NAME.mp4.resume beside the output; the "
                        "result equals an uninterrupted run")
    i.add_argument("--include-input", action=argparse.BooleanOptionalAction, default=True,
                   help="the output holds the input (as the VAE reconstructs it) followed by the "
                        "new frames (default); --no-include-input writes the new frames only")


def _input_file(args: argparse.Namespace) -> Path | None:
    """The file to continue / start from, checked readable (first frame decoded) up front."""
    from ..rollout.video_input import IMAGE_EXTENSIONS, is_image, read_frames

    flag, path = (("--start-image", args.start_image) if args.start_image is not None
                  else ("--continue-from", args.continue_from))
    if path is None:
        return None
    src = existing_file(path, flag)
    if flag == "--start-image" and not is_image(src):
        raise CliError(f"--start-image needs an image ({', '.join(IMAGE_EXTENSIONS)}), got {src}; "
                       f"use --continue-from for a video")
    try:
        next(read_frames(src, args.height, args.width))
    except (ValueError, StopIteration) as exc:
        raise CliError(f"{flag}: {exc or f'{src} has no frames'}") from None
    return src


def _encode_input(vae: Any, src: Path, args: argparse.Namespace, say: Any) -> Any:
    """Model-space prefix latents of the input file (streaming VAE encode)."""
    from ..rollout.sampler import from_raw
    from ..rollout.video_input import encode_file

    res = encode_file(vae, src, args.height, args.width)
    rate = "" if res.source_fps is None else f" (source {res.source_fps:g} fps)"
    dropped = (f"; the last {res.frames_dropped} frame(s) do not fill a latent frame and are "
               "left out" if res.frames_dropped else "")
    say(f"input {src.name}: {res.frames_read} frame(s) at 16 fps{rate} -> "
        f"{res.latents.shape[2]} latent frame(s) priming the memory{dropped}")
    return from_raw(res.latents)


def latent_frames(args: argparse.Namespace) -> int:
    """Latent frames to sample: --frames as given, --seconds rounded up to whole chunks."""
    if args.frames is not None:
        if args.frames < args.chunk:
            raise CliError(f"--frames ({args.frames}) must be at least one chunk ({args.chunk})")
        return args.frames
    latents = latent_frames_for_seconds(5.0 if args.seconds is None else args.seconds)
    return max(args.chunk, math.ceil(latents / args.chunk) * args.chunk)


def _jobs(args: argparse.Namespace, num_frames: int) -> tuple[list[Any], list[Path]]:
    """Prompt items (a string, or a schedule list) and their output paths, validated."""
    if args.prompt_file is not None:
        if args.out is not None:
            raise CliError("--out names one video; with --prompt-file use --out-dir")
        prompts = read_prompt_file(existing_file(args.prompt_file, "--prompt-file"))
        out_dir = writable_dir(args.out_dir or "fademem_out", "--out-dir")
        return prompts, [out_dir / output_name(i, len(prompts)) for i in range(len(prompts))]
    if args.out_dir is not None:
        raise CliError("--out-dir is for --prompt-file; name the video with --out")
    out = writable_file(args.out or "fademem_out/video.mp4", ".mp4", "--out")
    if args.prompt is not None:
        if not args.prompt.strip():
            raise CliError("--prompt is empty")
        return [args.prompt], [out]
    sched = read_schedule_file(existing_file(args.schedule, "--schedule"))
    return [schedule_to_latent_frames(sched, FPS, args.chunk, num_frames)], [out]


def _check_wan_dir(path: str) -> Path:
    root = existing_dir(path, "--wan-dir")
    for sub in ("text_encoder", "tokenizer", "vae"):
        if not (root / sub).is_dir():
            raise CliError(f"--wan-dir {root} has no {sub}/ folder (expected a diffusers-format "
                           f"Wan2.1-T2V-1.3B folder with text_encoder/, tokenizer/, vae/)")
    return root


def run(args: argparse.Namespace) -> int:
    import torch

    from ..rollout.batch import dist_info, run_sharded, shard

    # everything a user can get wrong is checked here, before any weights are read
    checkpoint = existing_file(args.checkpoint, "--checkpoint")
    lora = existing_file(args.lora, "--lora") if args.lora else None
    wan_dir = _check_wan_dir(args.wan_dir)
    sample_kw, sampler_line = sampling_kw(args, checkpoint)  # the record beside it, no weights yet
    policy = build_policy(args)
    policy.visible_frames(args.chunk)  # windows smaller than a chunk fail here
    num_frames = latent_frames(args)
    from ..rollout.sampler import check_output_size

    check_output_size(num_frames, args.height // 8, args.width // 8)  # not after loading
    items, outputs = _jobs(args, num_frames)
    source = _input_file(args)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
             None: None}[args.dtype]

    info = dist_info()
    device = _device(args.device, info)
    say = print if info.rank == 0 else (lambda *a, **k: None)
    mine = shard(len(items), info.rank, info.world_size)
    # a batch resumes where it stopped; a single named video is simply replaced
    resume = args.prompt_file is not None and not args.overwrite
    todo = [i for i in mine if not (resume and outputs[i].exists())]
    if len(todo) < len(mine):
        print(f"skipping {len(mine) - len(todo)} prompt(s) whose video exists "
              f"(pass --overwrite to redo them)")
    prints = {i: fingerprint(args, items[i], source, policy, sample_kw) for i in todo}
    resuming = {i for i in todo if args.resume and check_journal(journal_path(outputs[i]), prints[i])}

    model = vae = prefix = None
    texts: dict[int, Any] = {}
    if todo:
        _quiet_libraries()
        texts = _encode(items, todo, wan_dir, device)  # the encoder is gone after this
        model, vae = _load(checkpoint, lora, args, dtype, wan_dir, device)
        prefix = None if source is None else _encode_input(vae, source, args, say)
        new_video = 4 * num_frames if prefix is not None else video_frames_for_latents(num_frames)
        say(f"model {checkpoint.name}{' + ' + lora.name if lora else ''} on {device}; "
            f"policy {policy}; {num_frames} new latent frames = {new_video} video "
            f"frames at {args.width}x{args.height}; {sampler_line}")

    def work(index: int, item: Any) -> str:
        if index not in texts:
            return f"kept {outputs[index]} (exists)"
        journal = (prints[index], index in resuming)
        path = _render_one(model, vae, texts[index], policy, num_frames, prefix, journal, args,
                           sample_kw, outputs[index], f"[{index}]" if len(items) > 1 else "")
        return f"wrote {path}"

    return _report(run_sharded(items, work, info=info), len(items), say)


def _report(results: list[Any], count: int, say: Any) -> int:
    """Print what each prompt gave; the exit status (a single failed video raises CliError)."""
    failed = [r for r in results if not r.ok]
    if failed and count == 1:
        raise CliError(failed[0].error or "generation failed", code=1)
    for r in results:
        if r.ok:
            say(r.value)
        else:
            say(f"prompt {r.index} failed: {r.error}", file=sys.stderr)
    if failed:
        say(f"{len(failed)} of {count} prompt(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _load(checkpoint: Path, lora: Path | None, args: argparse.Namespace, dtype: Any,
          wan_dir: Path, device: Any) -> tuple[Any, Any]:
    """The causal Wan (the ``--weights`` set, its LoRA merged) and the Wan VAE on ``device``."""
    import torch

    from ..model.loading import load_model
    from ..rollout.video import load_wan_vae

    model = load_model(checkpoint, lora=lora, lora_strength=args.lora_strength, dtype=dtype,
                       device=device, weights=args.weights, lora_alpha=args.lora_alpha)
    vae = load_wan_vae(wan_dir, device=device,
                       dtype=torch.float32 if device.type == "cpu" else torch.bfloat16)
    return model, vae


def _device(arg: str | None, info: Any) -> Any:
    """``--device`` as a torch.device, refused before any weights are read ('foo', or cuda on a
    machine without CUDA); without it, this rank's GPU if any, else the CPU."""
    if not arg:
        return info.device()
    from ..model.loading import resolve_device

    try:
        return resolve_device(arg)
    except ValueError as e:
        raise CliError(f"--device: {e}") from None


def _quiet_libraries() -> None:
    """Keep the terminal for our progress bar: no loading bars or advice from the libraries."""
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:  # transformers missing: TextEncoder reports it
        pass


def _encode(items: list[Any], todo: list[int], wan_dir: Path, device: Any) -> dict[int, Any]:
    """Embeddings per item index (a tensor, or a schedule of tensors), encoder freed after."""
    from ..model.textenc import TextEncoder

    if not todo:
        return {}
    enc = TextEncoder.from_wan_dir(wan_dir, device=device)
    try:
        out: dict[int, Any] = {}
        for i in todo:
            item = items[i]
            if isinstance(item, str):
                out[i] = _Padded.of(enc.encode([item]))
            else:
                embs = enc.encode([prompt for _, prompt in item])
                out[i] = [(start, _Padded.of(embs[j:j + 1])) for j, (start, _) in enumerate(item)]
        return out
    finally:
        enc.close()


def _render_one(model: Any, vae: Any, text: Any, policy: Any, num_frames: int, prefix: Any,
                journal: tuple[dict, bool], args: argparse.Namespace, sample_kw: dict[str, Any],
                out: Path, label: str) -> Path:
    """Sample one video, decoding each chunk through the streaming VAE into ``out``.

    A prefix goes through the decoder too (its frames are written unless
    ``--no-include-input``), so the decoder's causal state runs on into the new frames.  The
    new frames are journaled as they come; with ``journal[1]`` (resume) the journaled whole
    chunks join the prefix and only the rest is sampled.
    """
    import torch

    from ..rollout.priming import chunk_spans
    from ..rollout.sampler import to_raw
    from ..rollout.streaming import RolloutStopped
    from ..rollout.video import StreamingVAEDecoder
    from .render import rollout_to_video

    path = journal_path(out)
    done = None
    if journal[1]:
        done = usable_frames(read_journal(path, args.height // 8, args.width // 8), args.chunk,
                             num_frames)
    kept = 0 if done is None else done.shape[2]
    if journal[1]:
        print(f"{label + ' ' if label else ''}resuming: {kept} of {num_frames} new latent frames "
              f"were made before the interruption")
    inputs = 0 if prefix is None else prefix.shape[2]
    parts = [p for p in (prefix, done) if p is not None]
    full_prefix = torch.cat(parts, dim=2) if len(parts) == 2 else (parts or [None])[0]
    record = Journal(path, journal[0])
    if done is not None:
        record.append(done)
    decoder = StreamingVAEDecoder(vae)
    progress = Progress(len(chunk_spans(num_frames - kept, args.chunk, inputs + kept)),
                        label=label)
    try:
        res = rollout_to_video(
            model, _to_device(text, model.device), policy, num_frames - kept, args.height,
            args.width, lambda x0: decoder.decode(to_raw(x0[:1]))[0], out, FPS,
            progress=progress, keep_partial=args.keep_partial, keep_latents=False,
            write_from=0 if args.include_input else inputs,
            on_chunk=lambda info: None if info.primed else record.append(info.x0[:1]),
            seed=args.seed, chunk=args.chunk, **sample_kw,
            context_noise=args.context_noise, context_input=args.context_input,
            switch=args.switch, prefix=full_prefix)
    except RolloutStopped as stop:
        if isinstance(stop.cause, KeyboardInterrupt):
            print(f"\nstopped: kept {stop.saved.frames} frames in {stop.saved.partial}",
                  file=sys.stderr)
            raise stop.cause from None  # Ctrl-C stops the whole batch, exit status 130
        raise RuntimeError(str(stop)) from stop.cause
    finally:
        decoder.close()
    record.finish()
    return res.video


class _Padded:
    """An embedding kept without its zeroed pad rows (a long prompt file stays small in RAM)."""

    def __init__(self, rows: Any, length: int) -> None:
        self.rows, self.length = rows, length

    @classmethod
    def of(cls, emb: Any) -> "_Padded":
        used = int(emb[0].abs().sum(-1).nonzero().max()) + 1 if emb.abs().sum() > 0 else 1
        return cls(emb[:, :used].clone(), emb.shape[1])

    def full(self, device: Any) -> Any:
        import torch

        out = torch.zeros(1, self.length, self.rows.shape[-1], device=device)
        out[:, : self.rows.shape[1]] = self.rows.to(device)
        return out


def _to_device(text: Any, device: Any) -> Any:
    if isinstance(text, list):
        return [(s, e.full(device)) for s, e in text]
    return text.full(device)
