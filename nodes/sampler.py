"""FadeMemSampler (the rollout as a node) and FadeMemPromptSchedule (several prompts over time).

Translation only: CONDITIONING -> umT5 embeddings or a prompt schedule, video frames -> latent
frames, the core callback -> ComfyUI progress, preview, interruption and node text.  The
rollout itself is ``fademem_core.generate``.
"""
from __future__ import annotations

from fademem_core import (CONTEXT_INPUTS, SAMPLER_CHOICES, SWITCH_MODES,
                          latent_frame_of_video_frame, latents_for_video_frames)

from . import comfy
from .cache import CACHE_TYPE
from .inputs import FadeMemNode, combo, float_input, inputs, int_input, outputs, socket
from .loader import MODEL_INPUT, MODEL_TOOLTIP, core_causal_wan, unwrap_model

START_KEY = "fademem_start_frame"  # latent frame where a scheduled prompt starts (CONDITIONING dict)
LABEL_KEY = "fademem_prompt_label"  # how errors name a scheduled prompt ("prompt 2 (start_2=320)")
MAX_SEED = 0xFFFFFFFFFFFFFFFF
MAX_LENGTH = 16385  # 4097 latent frames, about 17 minutes at 16 fps
SCHEDULE_SLOTS = 4


def latent_frames(length: int) -> int:
    """Latent frames of a ``length``-frame video (Wan VAE: 1 + 4 * (latent - 1) frames)."""
    if isinstance(length, int) and not isinstance(length, bool) and length > MAX_LENGTH:
        # the widget's maximum, also for API prompts that bypass the widgets
        raise ValueError(f"length must be at most {MAX_LENGTH} video frames, got {length}")
    return latents_for_video_frames(length)


def length_input(tooltip: str) -> tuple[str, dict]:
    """The video-length widget (1 + 4k frames, like core EmptyHunyuanLatentVideo), default 60 s."""
    return int_input(957, 1, MAX_LENGTH, tooltip, step=4)


def _default_start(k: int) -> int:
    """Default start of scheduled prompt ``k`` (2, 3, 4): every 320 video frames (20 s)."""
    return 320 * (k - 1)


def sampler_kw(model, sampler: str, steps: int, shift: float) -> dict:
    """The widgets -> ``generate``'s sampler, steps and shift (the core's ``sampler_options``):
    ``auto`` takes what the weights record (the embedded tiny world: Euler over its steps)."""
    from fademem_core import sampler_options

    return sampler_options(getattr(model, "sampler_record", None), sampler, steps, shift)


def describe_sampler(model, sampler: str, kw: dict) -> str:
    """One line for the node text: which sampler ran and where its settings came from."""
    from fademem_core import sampler_summary

    recorded = sampler == "auto" and getattr(model, "sampler_record", None) is not None
    where = "recorded with the weights" if recorded else "the widgets"
    return f"{sampler_summary(kw)} ({where})"


def sampler_input() -> tuple[list, dict]:
    """The sampler widget, shared by FadeMem Sampler and its streaming sibling."""
    return combo(SAMPLER_CHOICES,
                 "auto: the sampler the weights were trained for, when the JSON beside them "
                 "records one (the embedded tiny_world models: Euler ODE, 12 steps, shift 5; the "
                 "steps and shift widgets are then NOT used, the node text says what ran), else "
                 "few_step. few_step: the distilled generators' schedule (LongLive, Self-Forcing: "
                 "x0, then fresh noise between steps). euler: the Euler ODE of a base flow model. "
                 "few_step and euler use the steps and shift widgets.", default="auto")


def conditioning_to_text(positive, text_dim: int):
    """CONDITIONING -> ``[B, L, D]`` embeddings, or ``[(start, emb), ...]`` for a schedule."""
    if not isinstance(positive, (list, tuple)) or not positive:
        raise ValueError("positive must be a CONDITIONING (connect CLIP Text Encode or FadeMem Prompt Schedule)")
    for cond in positive:
        width = cond[0].shape[-1]
        if width != text_dim:
            raise ValueError(
                f"positive conditioning is {width} wide but the model expects {text_dim}: encode the prompt "
                f"with Load CLIP (type 'wan', umt5_xxl_fp8_e4m3fn_scaled.safetensors) + CLIP Text Encode "
                f"for a Wan model; the embedded tiny_world models take FadeMem Tiny World Prompt"
            )
    starts = [cond[1].get(START_KEY) for cond in positive]
    if len(positive) == 1 and starts[0] in (None, 0):
        return positive[0][0]
    if any(s is None for s in starts):
        raise ValueError(
            f"positive holds {len(positive)} conditionings without start frames; "
            "to change prompts over time combine them with FadeMem Prompt Schedule"
        )
    return [(int(s), cond[0]) for s, cond in zip(starts, positive)]


def prefix_samples(prefix):
    """The raw latents ``[1, 16, P, h, w]`` of an optional prefix LATENT (None when unconnected)."""
    if prefix is None:
        return None
    samples = prefix.get("samples") if isinstance(prefix, dict) else None
    if samples is None or getattr(samples, "ndim", 0) != 5:
        raise ValueError(
            "prefix must be a video LATENT {'samples': [1, 16, frames, height/8, width/8]} "
            f"(VAE Encode with the Wan 2.1 VAE), got "
            f"{getattr(samples, 'shape', type(samples).__name__) if samples is not None else prefix!r:.200}")
    return samples


def preview_image(x0_frame):
    """A small RGB picture of one model-space latent frame ``[16, h, w]``."""
    import torch
    from PIL import Image

    frame = x0_frame.detach().float().cpu()
    factors = comfy.latent_rgb_factors()
    if factors is not None:
        weight = torch.tensor(factors[0], dtype=torch.float32)  # [16, 3]
        bias = torch.tensor(factors[1], dtype=torch.float32)
        rgb = torch.einsum("chw,cr->hwr", frame, weight) + bias
        rgb = (rgb.clamp(-1, 1) + 1) / 2
    else:  # no ComfyUI: a fixed, colour-blind projection is enough for a progress picture
        rgb = torch.stack([frame[k::3].mean(0) for k in range(3)], dim=-1)
        rgb = (torch.tanh(rgb) + 1) / 2
    pixels = (rgb * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(pixels, "RGB")
    return image.resize((image.width * 8, image.height * 8), Image.NEAREST)


def _mib(nbytes: int | None) -> str:
    return "unbounded" if nbytes is None else f"{nbytes / 2**20:.1f} MiB"


class _Reporter:
    """The core callback: progress bar, preview of the newest chunk, interruption, KV text."""

    def __init__(self, total: int, node_id, bound: int | None):
        self.bar = comfy.progress_bar(total)
        self.node_id = node_id
        self.bound = bound
        self.peak = 0
        self.total = total

    def __call__(self, info) -> None:
        comfy.check_interrupted()
        self.peak = max(self.peak, info.kv_bytes)
        # a run without an end restarts the bar every `total` steps (one file's worth)
        done = (info.chunk * info.num_steps + info.step) % self.total + 1
        preview = comfy.preview_tuple(preview_image(info.x0[0, :, -1]))
        self.bar.update_absolute(done, self.total, preview)
        if info.step == 0:
            comfy.send_text(
                f"chunk {info.chunk + 1}{'' if info.num_chunks is None else f'/{info.num_chunks}'}: "
                f"KV memory {_mib(info.kv_bytes)} "
                f"({info.memory_entries} entries), bound {_mib(self.bound)}",
                self.node_id,
            )


class FadeMemSampler(FadeMemNode):
    """Autoregressive chunk-by-chunk text-to-video with a bounded KV memory."""

    FUNCTION = "sample"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("LATENT", "latent", "Raw Wan 2.1 video latents of the new frames; decode with VAE Decode "
                             "(wan_2.1_vae)."),
        ("LATENT", "with_prefix", "The prefix followed by the new frames (the whole clip; the same "
                                  "as latent without a prefix): VAE Decode -> Create Video shows "
                                  "the input and its continuation."))
    DESCRIPTION = (
        "Generates a long video chunk by chunk with a causal Wan2.1 model (LongLive / Self-Forcing). "
        "Each chunk attends to the cache's bounded memory plus itself; the memory never holds more "
        "than the cache's bound. Progress covers chunks x steps with a preview of the newest chunk; "
        "the node shows its KV memory while it runs."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return inputs({
            "model": socket(MODEL_INPUT, MODEL_TOOLTIP),
            "positive": socket("CONDITIONING", "The prompt (CLIP Text Encode with Load CLIP type "
                                               "'wan'), or a FadeMem Prompt Schedule for several "
                                               "prompts over time."),
            "cache": socket(CACHE_TYPE, "The memory: FadeMem Cache or FadeMem Baseline Cache."),
            "width": int_input(832, 16, 4096, "Video width in pixels (multiple of 16; the models "
                                              "were trained at 832).", step=16),
            "height": int_input(480, 16, 4096, "Video height in pixels (multiple of 16; trained "
                                               "at 480).", step=16),
            "length": length_input("Video frames, 1 + 4k (957 = 240 latent frames = 80 chunks, "
                                   "about 60 s at 16 fps). A last partial chunk is shorter."),
            "chunk": int_input(3, 1, 16, "Latent frames generated together (the models were "
                                         "trained with 3)."),
            "steps": int_input(4, 1, 50, "Denoising steps per chunk, evenly spaced from t=1000 "
                                         "(4 = 1000, 750, 500, 250 as trained). Not used with "
                                         "sampler=auto on weights that record their sampler."),
            "shift": float_input(5.0, 0.1, 20.0, "Flow-matching timestep shift (5.0 as trained). "
                                                 "Not used with sampler=auto on weights that "
                                                 "record their sampler.",
                                 step=0.1, round=0.01),
            "seed": int_input(0, 0, MAX_SEED, "Random seed: same seed, same video, on any device.",
                              control_after_generate=True),
            "context_noise": float_input(0.0, 0.0, 999.0,
                                         "Timestep label of the pass that writes a finished chunk "
                                         "into the memory (0 = clean, as LongLive/Self-Forcing "
                                         "ship). What that pass sees: context_input.", step=1.0),
            "context_input": combo(CONTEXT_INPUTS,
                                   "With context_noise > 0: clean = the pass sees the clean chunk "
                                   "labelled with that timestep, as Self-Forcing's and LongLive's "
                                   "inference do (default); noised = the chunk is noised to that "
                                   "timestep first, as Self-Forcing's training rollout does (its "
                                   "1000-step grid: 100 -> sigma 0.1011).", default="clean"),
            "switch": combo(SWITCH_MODES,
                            "Memory at a prompt switch (FadeMem Prompt Schedule). longlive: "
                            "LongLive's re-cache (re-runs its last sink + window frames, keeps the "
                            "sink as it was, global_sink on). longlive_resink: its global_sink off "
                            "(the oldest re-run frames become the sink). recache: this pack's own, "
                            "re-runs what the memory holds exactly (works for FadeMem). keep: "
                            "leave the memory. auto: longlive for the sink_window cache, recache "
                            "otherwise.", default="auto"),
        }, optional={
            # optional: API prompts and workflows saved before it existed still run (auto)
            "sampler": sampler_input(),
            "prefix": socket("LATENT", "Continue a video or start from an image: VAE Encode "
                                       "(wan_2.1_vae) of the loaded frames, at this node's width x "
                                       "height (16 fps clips). The prefix primes the memory as "
                                       "frames 0..P-1 (bounded, however long); length then counts "
                                       "the new frames, 4 video frames per latent frame."),
        }, hidden={"unique_id": "UNIQUE_ID"})

    def sample(self, model, positive, cache, width, height, length, chunk, steps, shift, seed,
               context_noise, context_input="clean", switch="auto", sampler="auto", prefix=None,
               unique_id=None):
        import torch

        from fademem_core import chunk_spans, generate, resolve_switch, to_raw

        model, core = unwrap_model(model)
        frames = latent_frames(length)
        kw = sampler_kw(model, sampler, steps, shift)
        text = conditioning_to_text(positive, model.text_dim)
        if isinstance(text, list):  # every prompt must get a chunk of its own: refuse, not drop
            from fademem_core import check_prompt_starts

            labels = [cond[1].get(LABEL_KEY) or f"conditioning {i + 1}" for i, cond in enumerate(positive)]
            check_prompt_starts([s for s, _ in text], int(chunk), frames, labels)
        batch = (text[0][1] if isinstance(text, list) else text).shape[0]
        geometry = model.geometry(batch, height, width)  # validates width/height before any work
        resolve_switch(switch, cache)  # a switch mode the cache cannot do fails here too
        given = prefix_samples(prefix)
        primed = 0 if given is None else given.shape[2]
        bound = cache.memory_bytes(geometry, chunk, max_frames=primed + frames)  # what generate allocates
        if core is None:
            comfy.free_memory(bound)
        else:  # ComfyUI loads and patches (LoRA) the core model, keeping the KV room free
            comfy.load_models([core], bound)
            model = core_causal_wan(core)
        num_chunks = len(chunk_spans(frames, int(chunk), primed))
        reporter = _Reporter(num_chunks * len(kw["steps"]), unique_id, bound)
        comfy.send_text(describe_sampler(model, sampler, kw), unique_id)
        try:
            latents = generate(model, text, cache, frames, height, width, seed=int(seed),
                               chunk=int(chunk), context_noise=float(context_noise),
                               context_input=context_input, switch=switch, callback=reporter,
                               prefix=given, prefix_raw=True, **kw)
        finally:
            # generate() frees its cache; hand that memory back to the driver on Cancel too
            comfy.soft_empty_cache()
        primed_text = f" after {primed} prefix latent frames" if primed else ""
        comfy.send_text(f"done: {frames} latent frames{primed_text}, {describe_sampler(model, sampler, kw)}, "
                        f"peak KV memory {_mib(reporter.peak)} (bound {_mib(bound)})", unique_id)
        new = to_raw(latents).to(comfy.output_device())
        whole = new if given is None else torch.cat([given.to(new), new], dim=2)  # the prefix as given
        return ({"samples": new}, {"samples": whole})


class FadeMemPromptSchedule(FadeMemNode):
    """Several prompts over time: prompt k takes over at its start frame."""

    FUNCTION = "build"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("CONDITIONING", "schedule", "A prompt schedule for FadeMem Sampler's positive input "
                                     "(FadeMem Sampler only)."))
    DESCRIPTION = (
        "Combines up to 4 prompts into a schedule: prompt 1 from the first frame, prompt k from "
        "video frame start_k. Switches happen at the first chunk starting at or after that frame; "
        "the sampler's `switch` decides what the memory does then (default: LongLive's re-cache "
        "for the sink_window cache, re-encoding what FadeMem holds exactly otherwise). "
        "Unconnected prompts are skipped."
    )

    @classmethod
    def INPUT_TYPES(cls):
        optional = {}
        for k in range(2, SCHEDULE_SLOTS + 1):
            optional[f"conditioning_{k}"] = socket("CONDITIONING", f"Prompt {k} (optional).")
            optional[f"start_{k}"] = int_input(
                _default_start(k), 4, MAX_LENGTH - 1, f"Video frame where prompt {k} starts (16 "
                "fps: 320 = 20 s). Must be after the previous connected prompt's start.", step=4)
        return inputs({"conditioning_1": socket("CONDITIONING", "Prompt 1, from the first frame.")},
                      optional=optional)

    def build(self, conditioning_1, **kw):
        parts = [(0, conditioning_1, "prompt 1")]
        for k in range(2, SCHEDULE_SLOTS + 1):
            cond = kw.get(f"conditioning_{k}")
            if cond is None:
                continue
            start = kw.get(f"start_{k}", _default_start(k))
            latent = latent_frame_of_video_frame(int(start))
            if latent <= parts[-1][0]:
                raise ValueError(f"start_{k} ({start}) must come after the previous prompt's start "
                                 f"(latent frame {parts[-1][0]}); starts must increase")
            parts.append((latent, cond, f"prompt {k} (start_{k}={start})"))
        schedule = []
        for latent, cond, label in parts:
            if len(cond) != 1:
                raise ValueError(f"each scheduled prompt must be one conditioning, got {len(cond)} entries")
            emb, meta = cond[0]
            schedule.append([emb, {**meta, START_KEY: latent, LABEL_KEY: label}])
        return (schedule,)


NODE_CLASS_MAPPINGS = {"FadeMemSampler": FadeMemSampler, "FadeMemPromptSchedule": FadeMemPromptSchedule}
NODE_DISPLAY_NAME_MAPPINGS = {"FadeMemSampler": "FadeMem Sampler", "FadeMemPromptSchedule": "FadeMem Prompt Schedule"}
