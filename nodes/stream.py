"""FadeMemStreamingSave: the rollout decoded and saved chunk by chunk, as an output node.

A sibling of FadeMem Sampler rather than a mode of it: FadeMem Sampler's contract is a LATENT
holding every frame (for core VAE Decode, or to continue a video), while this node keeps no
latents at all, needs the VAE and a file name, and can run without an end (``until_cancel``).
Translation only: core ``VAE`` -> the streaming Wan decoder, ComfyUI's output folder and naming
-> segment paths, Cancel -> the end of the run; the work is ``fademem_core.rollout.streaming``.
"""
from __future__ import annotations

from fademem_core.checks import check_int

from . import comfy
from .inputs import FadeMemNode, bool_input, inputs, int_input, socket, string_input
from .loader import core_causal_wan, unwrap_model
from .sampler import (FadeMemSampler, _mib, _Reporter, conditioning_to_text, describe_sampler,
                      latent_frames, prefix_samples, sampler_kw)

FPS = 16
MAX_SEGMENT_SECONDS = 3600
LIVE_EVENT = "fademem.live"  # the server event web/fademem_live.js plays from


def wan_vae(vae, reserve_bytes: int | None = None, together: tuple = ()):
    """A core ``VAE`` (Load VAE, wan_2.1_vae) or a diffusers ``AutoencoderKLWan`` -> the latter.

    A core VAE is loaded by ComfyUI keeping ``reserve_bytes`` (the KV memory) free beside it,
    together with the core models in ``together`` (a core MODEL the rollout runs)."""
    if hasattr(vae, "decoder") and hasattr(vae, "post_quant_conv"):
        comfy.load_models(list(together), reserve_bytes or 0)
        return vae  # already diffusers (tests, other packs)
    if not hasattr(vae, "first_stage_model"):
        raise ValueError(f"vae must come from Load VAE (wan_2.1_vae.safetensors), got "
                         f"{type(vae).__name__}")
    from fademem_core import wan_vae_from_original

    return wan_vae_from_original(comfy.vae_weights(vae, reserve_bytes, together))


def live_message(node_id, playlist, running: bool) -> dict:
    """The ``fademem.live`` event: what the node's player can play now, in order.

    ``files``: ``/view`` entries (``filename``, ``subfolder``, ``type``) with each file's first
    video frame and frame count; ``running`` is false once the run ended (the list is final)."""
    files = [{**comfy.view_entry(str(e.path)), "start": e.start, "frames": e.frames}
             for e in playlist]
    return {"node": None if node_id is None else str(node_id), "fps": FPS, "running": running,
            "frames": sum(f["frames"] for f in files), "files": files}


def segment_frames(until_cancel: bool, segment_seconds: int) -> int | None:
    """Video frames per file (None: one file); a run without an end must be cut into files."""
    check_int("segment_seconds", segment_seconds, 0, MAX_SEGMENT_SECONDS)
    if until_cancel and segment_seconds == 0:
        raise ValueError("until_cancel runs without an end: set segment_seconds > 0 so it is "
                         "written in playable files of that length")
    return segment_seconds * FPS if segment_seconds else None


class FadeMemStreamingSave(FadeMemNode):
    """FadeMem Sampler that decodes and saves each chunk as it is made (flat memory)."""

    RETURN_TYPES = ()
    RETURN_NAMES = ()
    OUTPUT_TOOLTIPS = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    DESCRIPTION = (
        "Generates like FadeMem Sampler, but decodes every finished chunk with the Wan VAE at "
        "once and appends it to an mp4 in the output folder (16 fps, Save Video names and "
        "metadata): one chunk of pixels at a time, frames identical to decoding all latents at "
        "once. Cancel, an error or out-of-memory keep the frames made so far as "
        "<name>.partial.mp4. until_cancel runs until Cancel, in files of segment_seconds. "
        "While it runs the node plays the video so far, one chunk more each time."
    )

    @classmethod
    def INPUT_TYPES(cls):
        # a separate switch, not length 0: the 1 + 4k grid of the length widget has no 0
        return inputs({
            **FadeMemSampler.INPUT_TYPES()["required"],
            "until_cancel": bool_input(False, "Ignore length and generate until you press Cancel, "
                                              "in bounded memory, writing a new file every "
                                              "segment_seconds."),
            "vae": socket("VAE", "Load VAE with wan_2.1_vae.safetensors."),
            "filename_prefix": string_input("video/FadeMem", "Output file prefix, as in Save "
                                                             "Video (subfolders and %date% work)."),
            "segment_seconds": int_input(0, 0, MAX_SEGMENT_SECONDS,
                                         "Start a new file every this many seconds (0 = one "
                                         "file). Needed with until_cancel; every file is a "
                                         "complete, playable video."),
        }, optional=FadeMemSampler.INPUT_TYPES()["optional"],  # prefix: continue a video
            hidden={"unique_id": "UNIQUE_ID", "prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"})

    def save(self, model, positive, cache, width, height, length, chunk, steps, shift, seed,
             context_noise, until_cancel, vae, filename_prefix, segment_seconds,
             context_input="clean", switch="auto", sampler="auto", prefix=None, unique_id=None,
             prompt=None, extra_pnginfo=None):
        from fademem_core import (LiveChunks, RolloutStopped, StreamingSave, StreamingVAEDecoder,
                                  chunk_spans, resolve_switch, stream_rollout, to_raw)

        # everything a user can get wrong is checked before the VAE or the rollout start
        model, core = unwrap_model(model)
        if not isinstance(until_cancel, bool):
            raise ValueError(f"until_cancel must be true or false, got {until_cancel!r}")
        frames = None if until_cancel else latent_frames(length)
        per_file = segment_frames(until_cancel, segment_seconds)
        if frames is None and cache.history_frames() is None:
            raise ValueError(f"until_cancel needs a bounded cache; {cache} grows with the video "
                             "(use FadeMem Cache or a window)")
        if not isinstance(filename_prefix, str) or not filename_prefix.strip():
            raise ValueError(f"filename_prefix must be a non-empty string, got {filename_prefix!r}")
        kw = sampler_kw(model, sampler, steps, shift)
        text = conditioning_to_text(positive, model.text_dim)
        batch = (text[0][1] if isinstance(text, list) else text).shape[0]
        given = prefix_samples(prefix)
        primed = 0 if given is None else given.shape[2]
        bound = cache.memory_bytes(model.geometry(batch, height, width), chunk,
                                   max_frames=None if frames is None else primed + frames)
        resolve_switch(switch, cache)  # a switch mode the cache cannot do fails here too
        if core is None:
            comfy.free_memory(bound)
        # loading it keeps the KV room free; a core MODEL is loaded (and patched) with it
        decoder = StreamingVAEDecoder(wan_vae(vae, bound, () if core is None else (core,)))
        if core is not None:
            model = core_causal_wan(core)
        live = LiveChunks(comfy.live_folder(), fps=FPS, on_change=lambda playlist: comfy.send_event(
            LIVE_EVENT, live_message(unique_id, playlist, running=True)))
        save = StreamingSave(lambda x0: decoder.decode(to_raw(x0[:1]))[0],
                             lambda _segment: comfy.next_video_path(filename_prefix, width, height),
                             fps=FPS, segment_frames=per_file, observer=live,
                             metadata=comfy.video_metadata(prompt, extra_pnginfo))
        chunks = (len(chunk_spans(frames, int(chunk), primed)) if frames is not None
                  else -(-(per_file // 4 + 1) // chunk))
        reporter = _Reporter(chunks * len(kw["steps"]), unique_id, bound)
        comfy.send_text(describe_sampler(model, sampler, kw), unique_id)
        try:
            # the prefix is decoded and written too: the file is the whole clip, and the
            # decoder's causal state runs on from the prefix into the new frames
            saved = stream_rollout(model, text, cache, frames, height, width, save,
                                   callback=reporter, stop_on=comfy.interrupt_exception(),
                                   seed=int(seed), chunk=int(chunk), context_noise=float(context_noise),
                                   context_input=context_input, switch=switch, prefix=given,
                                   prefix_raw=True, **kw)
            cancelled = frames is None  # a run without an end only ends by Cancel
        except RolloutStopped as stop:
            if not isinstance(stop.cause, comfy.interrupt_exception()):
                raise _with_where(stop) from stop.cause
            saved, cancelled = stop.saved, True
        finally:
            decoder.close()
            final = live.playlist()  # the kept files only, once the run stopped
            live.close()
            comfy.send_event(LIVE_EVENT, live_message(unique_id, final, running=False))
            comfy.soft_empty_cache()  # the cache and the decoder's frames go back to the driver
        state = "stopped by Cancel" if cancelled else "done"
        comfy.send_text(f"{state}: {saved.frames} frames in {len(saved.all_files)} file(s), "
                        f"last {saved.all_files[-1] if saved.all_files else 'none'}; peak KV memory "
                        f"{_mib(reporter.peak)} (bound {_mib(bound)})", unique_id)
        if cancelled:
            comfy.pass_interrupt_on()  # what was made is listed; the rest of the prompt stops
        return {"ui": {"images": [comfy.saved_result(str(p)) for p in saved.all_files],
                       "animated": (True,)}}


def _with_where(stop) -> BaseException:
    """The cause of a stop, its message extended by where the frames made so far are.

    The exception keeps its type when it can (ComfyUI treats out-of-memory errors specially)."""
    where = (f"FadeMem kept the {stop.saved.frames} frames made so far: "
             + ", ".join(str(p) for p in stop.saved.all_files))
    try:
        return type(stop.cause)(f"{stop.cause}\n{where}")
    except Exception:  # a constructor that takes something else than one message
        return RuntimeError(f"{type(stop.cause).__name__}: {stop.cause}\n{where}")


NODE_CLASS_MAPPINGS = {"FadeMemStreamingSave": FadeMemStreamingSave}
NODE_DISPLAY_NAME_MAPPINGS = {"FadeMemStreamingSave": "FadeMem Sampler + Streaming Save"}
