"""Writes the shipped workflows (UI format, this folder) and their API-format twins (tests/api_graphs).

Run from the repository root after changing a node's inputs:
    python scripts/make_workflows.py
Widget order comes from the nodes' own INPUT_TYPES and, for core nodes, from the trimmed
/object_info of ComfyUI 0.3.64 (tests/fixtures/object_info_core.json); tests/test_workflows.py
checks the written files against both independently of this script.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE_INFO = ROOT / "tests" / "fixtures" / "object_info_core.json"
PREVIEW_HEIGHT = 150  # web/layout_draw.js
WORKFLOW_NAMESPACE = uuid.UUID("6f3c1a52-8d1e-4b7a-9c2e-fade0fade000")  # ids of the shipped workflows
UI_ONLY = {"MarkdownNote"}  # frontend-only nodes: no inputs, never sent to /prompt
UPLOAD_VALUE = "image"  # what frontend 1.58 saves for an upload button (checked by the browser test)
LONGLIVE = "longlive_base.pt"
LONGLIVE_LORA = "lora.pt"
TEXT_ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
VAE = "wan_2.1_vae.safetensors"
INPUT_CLIP = "fademem_clip.mp4"  # the continue-a-video workflow's Load Video file (input/ folder)

DOWNLOADS = (
    "## Files this workflow needs\n"
    f"- `models/diffusion_models/{LONGLIVE}` and `models/loras/{LONGLIVE_LORA}`: LongLive v1.0 "
    "(Efficient-Large-Model/LongLive-1.3B on Hugging Face)\n"
    f"- `models/text_encoders/{TEXT_ENCODER}` and `models/vae/{VAE}`: "
    "Comfy-Org/Wan_2.1_ComfyUI_repackaged\n"
    "- optional: `models/diffusion_models/self_forcing_dmd.pt` (gdhe17/Self-Forcing) works in the "
    "loader too (set the LoRA to None).\n\n"
    "At 480x832 FadeMem's KV memory stays at 15 latent frames (4.7 GiB in bf16) however long "
    "the video is."
)


def load_pack_nodes() -> dict[str, type]:
    spec = importlib.util.spec_from_file_location("fademem_pack_for_workflows", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.NODE_CLASS_MAPPINGS


def node_inputs(kind: str, ours: dict[str, type], core: dict) -> list[tuple[str, object, dict]]:
    """(name, type, options) of every visible input in the frontend's order."""
    if kind in ours:
        spec = ours[kind].INPUT_TYPES()
        return [(n, s[0], s[1] if len(s) > 1 else {}) for sec in ("required", "optional")
                for n, s in spec.get(sec, {}).items()]
    info = core[kind]
    out = []
    for sec in ("required", "optional"):
        for n in info["input_order"].get(sec, []):
            s = info["input"][sec][n]
            out.append((n, s[0], s[1] if len(s) > 1 else {}))
    return out


def is_upload(opts: dict) -> bool:
    """A file combo with an upload button (Load Image / Load Video): the frontend saves the
    button's value right after the file name."""
    return bool(opts.get("image_upload") or opts.get("video_upload"))


def is_widget(kind: object) -> bool:
    return isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def outputs_of(kind: str, ours: dict[str, type], core: dict) -> list[tuple[str, str]]:
    if kind in ours:
        cls = ours[kind]
        return list(zip(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES), cls.RETURN_TYPES))
    info = core[kind]
    return list(zip(info["output_name"], info["output"]))


@dataclass
class Out:
    node: "Node"
    slot: int


@dataclass
class Node:
    id: int
    type: str
    pos: tuple[int, int]
    values: dict
    title: str | None = None
    control: str | None = None  # control_after_generate value after a seed widget
    size: tuple[int, int] | None = None

    def out(self, slot: int = 0) -> Out:
        return Out(self, slot)


@dataclass
class Workflow:
    name: str
    nodes: list[Node] = field(default_factory=list)

    def add(self, node_type, pos, title=None, control=None, size=None, **values) -> Node:
        node = Node(len(self.nodes) + 1, node_type, pos, values, title, control, size)
        self.nodes.append(node)
        return node


def build_ui(wf: Workflow, ours, core) -> dict:
    links, ui_nodes = [], []
    incoming: dict[int, list] = {}
    for node in wf.nodes:  # links first: an output lists every link that leaves it
        if node.type in UI_ONLY:
            continue
        sockets = [i for i in node_inputs(node.type, ours, core) if not is_widget(i[1])]
        for slot, (name, kind, _) in enumerate(sockets):
            src = node.values.get(name)
            if isinstance(src, Out):
                link_id = len(links) + 1
                out_type = outputs_of(src.node.type, ours, core)[src.slot][1]
                links.append([link_id, src.node.id, src.slot, node.id, slot, out_type])
                incoming.setdefault(node.id, []).append(link_id)
    order = {n.id: i for i, n in enumerate(topological(wf))}
    for node in wf.nodes:
        entry = {"id": node.id, "type": node.type, "pos": list(node.pos), "flags": {},
                 "order": order[node.id], "mode": 0, "properties": {"Node name for S&R": node.type}}
        if node.title:
            entry["title"] = node.title
        if node.type in UI_ONLY:
            entry.update(size=list(node.size or (400, 260)), inputs=[], outputs=[],
                         widgets_values=[node.values["text"]])
            ui_nodes.append(entry)
            continue
        inputs, widgets = [], []
        for name, kind, opts in node_inputs(node.type, ours, core):
            value = node.values.get(name)
            if is_widget(kind):
                if value is None:
                    if "default" not in opts:
                        raise ValueError(f"{wf.name}: {node.type}.{name} needs a value")
                    value = opts["default"]
                widgets.append(value)
                if opts.get("control_after_generate"):
                    widgets.append(node.control or "fixed")
                if is_upload(opts):
                    widgets.append(UPLOAD_VALUE)
            else:
                link = None
                if isinstance(value, Out):
                    link = next(lk[0] for lk in links if lk[3] == node.id and lk[4] == len(inputs))
                inputs.append({"name": name, "type": kind, "link": link})
        outputs = []
        for slot, (name, kind) in enumerate(outputs_of(node.type, ours, core)):
            outputs.append({"name": name, "type": kind, "slot_index": slot,
                            "links": [lk[0] for lk in links if lk[1] == node.id and lk[2] == slot]})
        height = 46 + 24 * (max(len(inputs), len(outputs)) + len(widgets))
        if node.type == "FadeMemCache":
            height += PREVIEW_HEIGHT  # the live layout picture under the widgets (web/)
        entry.update(size=list(node.size or (320, height)), inputs=inputs, outputs=outputs,
                     widgets_values=widgets)
        ui_nodes.append(entry)
    # the frontend validates the id as a UUID (1.27.x shows an alert otherwise); a name-based
    # UUID keeps the files reproducible
    return {"id": str(uuid.uuid5(WORKFLOW_NAMESPACE, wf.name)), "revision": 0, "last_node_id": len(wf.nodes),
            "last_link_id": len(links), "nodes": ui_nodes, "links": links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}, "frontendVersion": core_version()[1]},
            "version": 0.4}


def build_api(wf: Workflow, ours, core) -> dict:
    graph = {}
    for node in wf.nodes:
        if node.type in UI_ONLY:
            continue
        inputs = {}
        for name, kind, opts in node_inputs(node.type, ours, core):
            value = node.values.get(name)
            if isinstance(value, Out):
                inputs[name] = [str(value.node.id), value.slot]
            elif is_widget(kind):
                inputs[name] = opts.get("default") if value is None else value
        graph[str(node.id)] = {"class_type": node.type, "inputs": inputs,
                               "_meta": {"title": node.title or node.type}}
    return graph


def topological(wf: Workflow) -> list[Node]:
    done, out = set(), []

    def visit(node):
        if node.id in done:
            return
        for v in node.values.values():
            if isinstance(v, Out):
                visit(v.node)
        done.add(node.id)
        out.append(node)

    for n in wf.nodes:
        visit(n)
    return out


def core_version() -> tuple[str, str]:
    info = json.loads(CORE_INFO.read_text())
    return info["comfyui_version"], info["frontend_version"]


# ----------------------------------------------------------------------------- the workflows
def _model_text_vae(wf: Workflow, y: int = 0):
    loader = wf.add("FadeMemModelLoader", (0, y), model_name=LONGLIVE, lora_name=LONGLIVE_LORA,
                    lora_strength=1.0, weight_dtype="default")
    clip = wf.add("CLIPLoader", (0, y + 200), clip_name=TEXT_ENCODER, type="wan", device="default")
    vae = wf.add("VAELoader", (0, y + 340), vae_name=VAE)
    return loader, clip, vae


def _decode_save(wf: Workflow, latent: Out, vae: Node, x: int, y: int, prefix: str) -> None:
    images = wf.add("VAEDecode", (x, y), size=(220, 100), samples=latent, vae=vae.out())
    video = wf.add("CreateVideo", (x + 250, y), size=(220, 120), images=images.out(), fps=16.0)
    wf.add("SaveVideo", (x + 500, y), video=video.out(), filename_prefix=prefix, format="auto", codec="auto",
           size=(320, 420))


def _streaming_t2v(name: str, prompt: str, seed: int, note: str, **save) -> Workflow:
    """One prompt on LongLive with FadeMem (M = 12, beta = 0.3) into FadeMem Sampler + Streaming
    Save: each chunk is decoded and written as it is made, so no node ever holds the decoded
    video at once (and what was made is kept if the run stops)."""
    wf = Workflow(name)
    loader, clip, vae = _model_text_vae(wf)
    text = wf.add("CLIPTextEncode", (360, 200), size=(400, 200), clip=clip.out(), text=prompt)
    cache = wf.add("FadeMemCache", (360, 440), budget=12, beta=0.3, anchor=True,
                   operator="weighted_average", positions="absolute")
    wf.add("FadeMemStreamingSave", (800, 0), size=(400, 560), control="randomize", model=loader.out(),
           positive=text.out(), cache=cache.out(), width=832, height=480, length=957, chunk=3, steps=4,
           shift=5.0, seed=seed, context_noise=0.0, vae=vae.out(), **save)
    wf.add("MarkdownNote", (0, 480), size=(330, 320), text=note + "\n\n" + DOWNLOADS)
    return wf


def t2v_60s() -> Workflow:
    return _streaming_t2v(
        "fademem_t2v_60s",
        "A golden retriever runs along a sunny beach at low tide, waves rolling in, the camera "
        "tracking beside the dog, warm late-afternoon light, realistic, high detail.", 42,
        "# FadeMem: 60 s text-to-video\n\nThe video is decoded and saved chunk by chunk while it "
        "samples (`output/video/fademem_60s_*.mp4`); Cancel keeps what was made as `*.partial.mp4`.",
        until_cancel=False, filename_prefix="video/fademem_60s", segment_seconds=0)


def watch_it_grow() -> Workflow:
    return _streaming_t2v(
        "fademem_watch_it_grow",
        "A slow drone flight over an endless autumn forest, rivers winding between the hills, "
        "soft morning mist, cinematic, high detail.", 1,
        "# Watch it grow: until you press Cancel\n\nThe sampler runs without an end in flat "
        "memory (the KV memory shown on the node never grows). Every 10 s of video is closed into "
        "its own playable file (`output/video/fademem_endless_00001_.mp4`, `_00002_` ...) while the next "
        "one is made; press Cancel to stop: the last file is closed and the node lists them all.",
        until_cancel=True, filename_prefix="video/fademem_endless", segment_seconds=10)


def side_by_side() -> Workflow:
    wf = Workflow("fademem_vs_longlive_side_by_side")
    loader, clip, vae = _model_text_vae(wf)
    text = wf.add("CLIPTextEncode", (360, 200), size=(400, 200), clip=clip.out(), text=(
        "A woman in a red coat walks through a busy city street at night, neon signs reflecting on "
        "wet pavement, the camera following her from behind, cinematic."))
    fm = wf.add("FadeMemCache", (360, 440), title="FadeMem (M=12, beta=0.3)", budget=12, beta=0.3,
                anchor=True, operator="weighted_average", positions="absolute")
    ll = wf.add("FadeMemBaselineCache", (360, 820), title="LongLive sink + window (3 + 9)",
                kind="sink_window", sink=3, window=9, positions="absolute")
    common = dict(model=loader.out(), positive=text.out(), width=832, height=480, length=957, chunk=3,
                  steps=4, shift=5.0, seed=2026, context_noise=0.0)
    # each memory switches prompts its own way: FadeMem re-encodes what it holds exactly,
    # LongLive's window is re-cached exactly as LongLive's interactive pipeline does
    a = wf.add("FadeMemSampler", (800, 0), title="FadeMem Sampler (FadeMem)", control="fixed",
               cache=fm.out(), switch="recache", **common)
    b = wf.add("FadeMemSampler", (800, 480), title="FadeMem Sampler (sink + window)", control="fixed",
               cache=ll.out(), switch="longlive", **common)
    _decode_save(wf, a.out(), vae, 1160, 0, "video/compare_fademem")
    _decode_save(wf, b.out(), vae, 1160, 480, "video/compare_sink_window")
    wf.add("MarkdownNote", (0, 480), size=(330, 300), text=(
        "# Same seed, two memories\n\nBoth samplers share the model, the prompt and the seed "
        "(fixed); only the KV memory differs: FadeMem's 12 distance-aware entries (a chunk sees 15 "
        "frames) vs LongLive's 3 sink frames + 9 most recent frames, chunk included (a chunk sees "
        "12).\n\n" + DOWNLOADS))
    return wf


def _peers_workflow(name: str, peers: list[tuple[str, str, dict]], note: str) -> Workflow:
    """FadeMem (M=12, beta=0.3) next to ``peers`` ``(title, kind, widgets)`` of the Baseline
    Cache node, one sampler each on the same weights, prompt and seed."""
    wf = Workflow(name)
    loader, clip, vae = _model_text_vae(wf)
    text = wf.add("CLIPTextEncode", (360, 200), size=(400, 200), clip=clip.out(), text=(
        "A turtle swims over a coral reef and slowly turns into an alligator, sunlight "
        "flickering through the water, the camera following it, realistic."))
    caches = [("FadeMem (M=12, beta=0.3)", "fademem", wf.add(
        "FadeMemCache", (360, 440), title="FadeMem (M=12, beta=0.3)", budget=12, beta=0.3,
        anchor=True, operator="weighted_average", positions="absolute"))]
    for i, (title, kind, widgets) in enumerate(peers):
        caches.append((title, kind, wf.add("FadeMemBaselineCache", (360, 820 + 440 * i),
                                           title=title, kind=kind, **widgets)))
    common = dict(model=loader.out(), positive=text.out(), width=832, height=480, length=957, chunk=3,
                  steps=4, shift=5.0, seed=2026, context_noise=0.0)
    for i, (title, kind, cache) in enumerate(caches):
        sampler = wf.add("FadeMemSampler", (800, 480 * i), title=f"FadeMem Sampler ({title})",
                         control="fixed", cache=cache.out(), **common)
        _decode_save(wf, sampler.out(), vae, 1160, 480 * i, f"video/compare_{kind}")
    wf.add("MarkdownNote", (0, 480), size=(330, 340), text=note + "\n\n" + DOWNLOADS)
    return wf


def side_by_side_peers() -> Workflow:
    """FadeMem next to MemRoPE and the FadeMem release on the same weights and seed."""
    return _peers_workflow("fademem_vs_peers_side_by_side", [
        ("MemRoPE (sink 3, EMA 0.01/0.1, recent 4)", "memrope", {}),
        ("FadeMem as released (window layout)", "fademem_release", {}),
    ], "# FadeMem vs the peer memories\n\nThree samplers share the model, the prompt and the "
       "seed (fixed); only the KV memory differs: FadeMem's 12 distance-aware entries (a chunk "
       "sees 15 frames), MemRoPE's sink + slow/fast moving averages + recent frames (12), and "
       "FadeMem as the official release codes it (the memory the FadeMem-FT LoRA was trained "
       "with; 15). The README's policy table lists every memory.")


def side_by_side_deep_forcing() -> Workflow:
    """FadeMem next to Deep Forcing and MemRoPE on the same weights and seed."""
    return _peers_workflow("fademem_vs_deep_forcing_side_by_side", [
        ("Deep Forcing (sink 10, C 2, recent 4)", "deep_forcing", {}),
        ("MemRoPE (sink 3, EMA 0.01/0.1, recent 4)", "memrope", {}),
    ], "# FadeMem vs Deep Forcing and MemRoPE\n\nThree samplers share the model, the prompt "
       "and the seed (fixed); only the KV memory differs: FadeMem's 12 distance-aware entries (a "
       "chunk sees 15 frames), Deep Forcing's deep sink of 10 frames + the 2 frames' worth of "
       "tokens the chunk attends to most + 4 recent frames (19), and MemRoPE's sink + slow/fast "
       "moving averages + recent frames (12). The README's policy table lists every memory.")


def prompt_story() -> Workflow:
    wf = Workflow("fademem_prompt_story")
    loader, clip, vae = _model_text_vae(wf)
    prompts = (
        "A small red fox trots through a snowy pine forest at dawn, soft blue light, the camera "
        "following at ground level.",
        "The red fox reaches a frozen lake and stops at the edge, sniffing the ice, snow falling "
        "gently, same forest in the background.",
        "The red fox curls up under a pine tree as the sun rises, golden light spreading over the "
        "snow, calm and quiet.",
    )
    texts = [wf.add("CLIPTextEncode", (360, 220 * i), title=f"Prompt {i + 1}", size=(400, 180),
                    clip=clip.out(), text=p) for i, p in enumerate(prompts)]
    schedule = wf.add("FadeMemPromptSchedule", (800, 0), conditioning_1=texts[0].out(),
                      conditioning_2=texts[1].out(), start_2=320, conditioning_3=texts[2].out(), start_3=640)
    cache = wf.add("FadeMemCache", (800, 360), budget=12, beta=0.3, anchor=True,
                   operator="weighted_average", positions="absolute")
    sampler = wf.add("FadeMemSampler", (1160, 0), control="randomize", model=loader.out(),
                     positive=schedule.out(), cache=cache.out(), width=832, height=480, length=957, chunk=3,
                     steps=4, shift=5.0, seed=7, context_noise=0.0)
    _decode_save(wf, sampler.out(), vae, 1520, 0, "video/fademem_story")
    wf.add("MarkdownNote", (0, 480), size=(330, 300), text=(
        "# A 60 s story in three prompts\n\nPrompt 2 takes over at video frame 320 (20 s), prompt 3 "
        "at frame 640 (40 s). At each switch the frames FadeMem still holds exactly are re-encoded "
        "under the new prompt; consolidated distant entries keep the story's look.\n\n" + DOWNLOADS))
    return wf


def layout_betas() -> Workflow:
    wf = Workflow("fademem_memory_layout_betas")
    layouts = []
    for i, beta in enumerate((0.1, 0.3, 0.9)):
        cache = wf.add("FadeMemCache", (0, 380 * i), title=f"FadeMem beta={beta}", budget=12, beta=beta,
                       anchor=True, operator="weighted_average", positions="absolute")
        layouts.append(wf.add("FadeMemMemoryLayout", (380, 380 * i), cache=cache.out(), length=957,
                              width=768, height=384))
    top = wf.add("ImageStitch", (760, 0), image1=layouts[0].out(), image2=layouts[1].out(), direction="down",
                 match_image_size=True, spacing_width=8, spacing_color="white")
    both = wf.add("ImageStitch", (760, 300), image1=top.out(), image2=layouts[2].out(), direction="down",
                  match_image_size=True, spacing_width=8, spacing_color="white")
    wf.add("SaveImage", (1120, 0), images=both.out(), filename_prefix="fademem/layout_betas", size=(480, 600))
    wf.add("MarkdownNote", (1120, 700), size=(400, 300), text=(
        "# How beta shapes the memory\n\nEach picture: latent frames left to right, rollout steps "
        "top to bottom, one bar per memory entry (pale = exact frame, dark = consolidated, orange = "
        "first-frame anchor). Small beta compresses distant history hard and keeps many recent "
        "frames exact (best consistency, paper default 0.3); beta = 1 spreads the merges evenly. "
        "Needs no model: just press Run. The FadeMem Cache node also shows this layout live while "
        "you drag beta."))
    return wf


def continue_video() -> Workflow:
    wf = Workflow("fademem_continue_video")
    loader, clip, vae = _model_text_vae(wf)
    video = wf.add("LoadVideo", (360, 0), size=(320, 420), file=INPUT_CLIP)
    parts = wf.add("GetVideoComponents", (360, 450), size=(260, 110), video=video.out())
    scaled = wf.add("ImageScale", (360, 600), size=(300, 170), image=parts.out(0),
                    upscale_method="lanczos", width=832, height=480, crop="center")
    encoded = wf.add("VAEEncode", (360, 800), size=(220, 100), pixels=scaled.out(), vae=vae.out())
    text = wf.add("CLIPTextEncode", (720, 0), size=(400, 180), clip=clip.out(), text=(
        "The same scene continues: the camera keeps moving forward at the same pace, the light "
        "and the weather stay as they are, realistic, high detail."))
    cache = wf.add("FadeMemCache", (720, 220), budget=12, beta=0.3, anchor=True,
                   operator="weighted_average", positions="absolute")
    sampler = wf.add("FadeMemSampler", (1160, 0), control="randomize", model=loader.out(),
                     positive=text.out(), cache=cache.out(), width=832, height=480, length=321,
                     chunk=3, steps=4, shift=5.0, seed=11, context_noise=0.0,
                     prefix=encoded.out())
    _decode_save(wf, sampler.out(1), vae, 1520, 0, "video/fademem_continued")
    wf.add("MarkdownNote", (0, 480), size=(330, 420), text=(
        "# Continue a video\n\n"
        f"Put your clip in ComfyUI's `input/` folder (or pick it in Load Video; this file names "
        f"`{INPUT_CLIP}`). The models run at 16 fps: give a 16 fps clip (the CLI resamples other "
        "rates). Upscale Image brings it to the sampler's 832x480 (cover + centre crop); VAE "
        "Encode turns it into the prefix, which primes FadeMem's memory chunk by chunk, so the "
        "memory stays at 12 entries however long the clip is. `length` counts the new frames "
        "(321 = 81 latent frames, about 20 s more); the `with_prefix` output holds clip + "
        "continuation. To start from a picture, use Load Image -> VAE Encode instead.\n\n"
        "LongLive and Self-Forcing were trained text-only, never image-conditioned: priming "
        "works because the memory is the model's only view of the past, not because the model "
        "learned to follow an input.\n\n" + DOWNLOADS))
    return wf


TINY_WORLD = "tiny_world (embedded, no download)"  # FadeMem Model Loader's embedded entry


def tiny_world() -> Workflow:
    """The pack with nothing downloaded: the embedded tiny-world model, its prompt and its own
    latent -> RGB map, FadeMem's memory, saved as a video (64x64, 240 latent frames)."""
    wf = Workflow("fademem_tiny_world")
    loader = wf.add("FadeMemModelLoader", (0, 0), model_name=TINY_WORLD, lora_name="None",
                    lora_strength=1.0, weight_dtype="default")
    prompt = wf.add("FadeMemTinyWorldPrompt", (0, 270), model=loader.out(), family=0,
                    sprite_a="class 1", sprite_b="class 4")
    cache = wf.add("FadeMemCache", (360, 0), budget=12, beta=0.3, anchor=True,
                   operator="weighted_average", positions="absolute")
    sampler = wf.add("FadeMemSampler", (720, 0), size=(400, 600), control="fixed", model=loader.out(),
                     positive=prompt.out(), cache=cache.out(), width=64, height=64, length=957,
                     chunk=3, steps=4, shift=5.0, seed=0, context_noise=0.0, sampler="auto")
    images = wf.add("FadeMemTinyWorldDecode", (1160, 0), size=(260, 100), samples=sampler.out(), scale=8)
    video = wf.add("CreateVideo", (1450, 0), size=(220, 120), images=images.out(), fps=16.0)
    wf.add("SaveVideo", (1700, 0), video=video.out(), filename_prefix="video/fademem_tiny_world",
           format="auto", codec="auto", size=(320, 420))
    wf.add("MarkdownNote", (0, 470), size=(330, 380), text=(
        "# Try it with nothing downloaded\n\nThe tiny toy-world model ships inside the pack "
        "(2.4 MB; `tiny_world_ft` is its FadeMem-FT fine-tune). Its \"prompt\" picks a "
        "background family and the sprite classes; its latents are pictures through the world's "
        "own latent -> RGB map (no VAE). `sampler = auto` runs the Euler sampler over the steps "
        "the weights record (12), not the 4 few-step widgets; pick `few_step` to see what the "
        "distilled schedule makes of a base model (blur). 240 latent frames take about 15 s of "
        "CPU time on one core; FadeMem's memory stays at 12 entries."))
    return wf


WORKFLOWS = (t2v_60s, watch_it_grow, side_by_side, side_by_side_peers, side_by_side_deep_forcing,
             prompt_story, layout_betas, continue_video, tiny_world)
# the template browser's texts (workflows/meta/index.json, see write_index)
DESCRIPTIONS = {
    "fademem_t2v_60s": ("FadeMem: 60 s text-to-video",
                        "60 s from one prompt on LongLive with FadeMem (M = 12, beta = 0.3), "
                        "decoded and saved chunk by chunk while it samples."),
    "fademem_watch_it_grow": ("Watch it grow: until Cancel",
                              "Generates until you press Cancel in flat memory, one playable "
                              "file every 10 s of video."),
    "fademem_vs_longlive_side_by_side": ("FadeMem vs LongLive, side by side",
                                         "The same prompt and seed with FadeMem's memory and with "
                                         "LongLive's sink + window, saved as two videos."),
    "fademem_vs_peers_side_by_side": ("FadeMem vs peer memories, side by side",
                                      "The same prompt and seed with FadeMem, MemRoPE and FadeMem as "
                                      "released, saved as separate videos."),
    "fademem_vs_deep_forcing_side_by_side": ("FadeMem vs Deep Forcing and MemRoPE",
                                             "The same prompt and seed with FadeMem, Deep Forcing's "
                                             "deep sink + participative compression and MemRoPE, "
                                             "saved as separate videos."),
    "fademem_prompt_story": ("A 60 s story in three prompts",
                             "FadeMem Prompt Schedule switches prompts at 20 s and 40 s."),
    "fademem_memory_layout_betas": ("How beta shapes the memory",
                                    "The memory layout for beta 0.1 / 0.3 / 0.9; no model needed."),
    "fademem_continue_video": ("Continue a video",
                               "Primes FadeMem's memory with your clip (VAE Encode -> prefix) and "
                               "continues it for about 20 s more."),
    "fademem_tiny_world": ("Try it with nothing downloaded: the tiny world",
                           "The embedded tiny-world model with FadeMem's memory: 240 latent "
                           "frames of a toy world, no downloads, runs on a CPU."),
}
MODEL_WIDGETS = ("model_name", "lora_name", "clip_name", "vae_name")


def _write_json(path: Path, data: dict | list) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, path)


def models_of(wf: Workflow) -> list[str]:
    """The model files a workflow's loaders select, in order, without repeats (the embedded
    tiny world is no file to download)."""
    names = [n.values[k] for n in wf.nodes for k in MODEL_WIDGETS
             if n.values.get(k) not in (None, "None", TINY_WORLD)]
    return list(dict.fromkeys(names))


def build_index(workflows: list[Workflow]) -> list[dict]:
    """A template index in the layout of ComfyUI's own templates (index.json): one category of
    templates, each with title, description, thumbnail and the model files it needs.

    It lives in workflows/meta/, not beside the workflows: ComfyUI (0.3.64 and current) lists
    every ``*.json`` of the folder as a template, and the frontend reads no index for packs."""
    return [{"moduleName": "fademem", "title": "FadeMem", "type": "video", "templates": [
        {"name": wf.name, "title": DESCRIPTIONS[wf.name][0], "description": DESCRIPTIONS[wf.name][1],
         "mediaType": "image", "mediaSubtype": "jpg", "thumbnail": f"../{wf.name}.jpg",
         "models": models_of(wf)} for wf in workflows]}]


def main() -> None:
    ours = load_pack_nodes()
    core = json.loads(CORE_INFO.read_text())["nodes"]
    api_dir = ROOT / "tests" / "api_graphs"
    api_dir.mkdir(parents=True, exist_ok=True)
    made = [make() for make in WORKFLOWS]
    for wf in made:
        _write_json(ROOT / "workflows" / f"{wf.name}.json", build_ui(wf, ours, core))
        _write_json(api_dir / f"{wf.name}.json", build_api(wf, ours, core))
        print("wrote", wf.name)
    (ROOT / "workflows" / "meta").mkdir(exist_ok=True)
    _write_json(ROOT / "workflows" / "meta" / "index.json", build_index(made))


if __name__ == "__main__":
    main()
