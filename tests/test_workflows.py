"""The shipped workflows: node types exist, widget values fit the inputs in order and range,
links connect matching types, and the API-format twins say the same thing.

Core nodes are checked against a trimmed real /object_info of ComfyUI 0.3.64
(tests/fixtures/object_info_core.json), ours against their INPUT_TYPES.
"""
from __future__ import annotations

import json
import uuid

import pytest

from tests.support.pack import ROOT, load_pack

OURS = load_pack().NODE_CLASS_MAPPINGS
CORE_INFO = json.loads((ROOT / "tests" / "fixtures" / "object_info_core.json").read_text())
CORE = CORE_INFO["nodes"]
UI_ONLY = {"MarkdownNote", "Note"}  # frontend-only nodes, never sent to the server
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
WORKFLOWS = {
    "fademem_t2v_60s", "fademem_watch_it_grow", "fademem_vs_longlive_side_by_side",
    "fademem_vs_peers_side_by_side", "fademem_vs_deep_forcing_side_by_side",
    "fademem_prompt_story", "fademem_memory_layout_betas",
    "fademem_continue_video", "fademem_tiny_world",
}
INDEX = ROOT / "workflows" / "meta" / "index.json"
# combos listing the user's model files: the workflows must name the files the README says to download
MODEL_FILE_INPUTS = {
    ("FadeMemModelLoader", "model_name"): {"longlive_base.pt", "self_forcing_dmd.pt",
                                           "tiny_world (embedded, no download)"},
    ("FadeMemModelLoader", "lora_name"): {"None", "lora.pt"},
    ("CLIPLoader", "clip_name"): {"umt5_xxl_fp8_e4m3fn_scaled.safetensors"},
    ("VAELoader", "vae_name"): {"wan_2.1_vae.safetensors"},
    ("LoadVideo", "file"): {"fademem_clip.mp4"},  # the user's clip in ComfyUI's input/ folder
}
EMBEDDED = "tiny_world (embedded, no download)"  # FadeMem Model Loader's shipped tiny model
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def inputs_of(node_type: str) -> list[tuple[str, object, dict]]:
    """(name, type, options) in the frontend's order: required then optional."""
    if node_type in OURS:
        spec = OURS[node_type].INPUT_TYPES()
        return [(n, s[0], s[1] if len(s) > 1 else {}) for sec in ("required", "optional")
                for n, s in spec.get(sec, {}).items()]
    info = CORE[node_type]
    return [(n, info["input"][sec][n][0], (info["input"][sec][n] + [{}])[1])
            for sec in ("required", "optional") for n in info["input_order"].get(sec, [])]


def required_names(node_type: str) -> set[str]:
    if node_type in OURS:
        return set(OURS[node_type].INPUT_TYPES()["required"])
    return set(CORE[node_type]["input_order"]["required"])


def outputs_of(node_type: str) -> list[str]:
    return list(OURS[node_type].RETURN_TYPES) if node_type in OURS else CORE[node_type]["output"]


def is_widget(kind) -> bool:
    return isinstance(kind, list) or kind in WIDGET_TYPES


def combo_options(kind, opts) -> list | None:
    if isinstance(kind, list):
        return kind
    if kind == "COMBO":
        return opts["options"]
    return None


def load(name: str) -> dict:
    return json.loads((ROOT / "workflows" / f"{name}.json").read_text())


def test_the_workflows_are_shipped_and_nothing_else():
    assert {p.stem for p in (ROOT / "workflows").glob("*.json")} == WORKFLOWS
    # ComfyUI serves this folder as /api/workflow_templates/<pack>/ and lists every *.json in it
    # as a template: workflows and their same-name .jpg thumbnails only, the index in meta/
    # (the generator scripts live in scripts/)
    extra = {p.name for p in (ROOT / "workflows").iterdir()} - {f"{n}{ext}" for n in WORKFLOWS for ext in (".json", ".jpg")} - {"meta"}
    assert not extra, f"not a workflow or its thumbnail: {sorted(extra)}"
    for name in WORKFLOWS:  # the frontend validates the id as a UUID (1.27.x alerts otherwise)
        uuid.UUID(json.loads((ROOT / "workflows" / f"{name}.json").read_text())["id"])


def check_value(where: str, node_type: str, name: str, kind, opts: dict, value) -> None:
    files = MODEL_FILE_INPUTS.get((node_type, name))
    if files is not None:
        assert value in files, f"{where}: {value!r} is not a file the README names"
        return
    options = combo_options(kind, opts)
    if options is not None:
        assert value in options, f"{where}: {value!r} not in {options}"
    elif kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} is not an int"
        assert opts.get("min", -2**63) <= value <= opts.get("max", 2**64), f"{where}: {value} out of range"
        step = opts.get("step", 1)
        if step > 1:
            assert (value - opts.get("min", 0)) % step == 0, f"{where}: {value} off the step grid"
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert opts.get("min", float("-inf")) <= value <= opts.get("max", float("inf")), f"{where}: {value}"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    elif kind == "STRING":
        assert isinstance(value, str) and value, where
    else:
        raise AssertionError(f"{where}: unexpected widget type {kind!r}")


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_nodes_exist_and_widgets_match_inputs(name):
    wf = load(name)
    ids = [n["id"] for n in wf["nodes"]]
    assert len(ids) == len(set(ids)) and wf["last_node_id"] >= max(ids)
    for node in wf["nodes"]:
        kind = node["type"]
        where = f"{name}: node {node['id']} {kind}"
        if kind in UI_ONLY:
            assert isinstance(node["widgets_values"][0], str)
            continue
        assert kind in OURS or kind in CORE, f"{where}: unknown node type"
        values = list(node["widgets_values"])
        expected_sockets = []
        for input_name, input_kind, opts in inputs_of(kind):
            if not is_widget(input_kind):
                expected_sockets.append((input_name, input_kind))
                continue
            assert values, f"{where}: widgets_values too short at {input_name}"
            check_value(f"{where}.{input_name}", kind, input_name, input_kind, opts, values.pop(0))
            if opts.get("control_after_generate"):
                assert values.pop(0) in CONTROL_VALUES, f"{where}: control_after_generate entry"
            if opts.get("image_upload") or opts.get("video_upload"):
                assert values.pop(0) == "image", f"{where}: the upload button's saved entry"
        assert not values, f"{where}: extra widgets_values {values}"
        assert [(i["name"], i["type"]) for i in node["inputs"]] == expected_sockets, where
        assert [o["type"] for o in node["outputs"]] == outputs_of(kind), where


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_links_connect_matching_types(name):
    wf = load(name)
    nodes = {n["id"]: n for n in wf["nodes"]}
    link_ids = [lk[0] for lk in wf["links"]]
    assert len(link_ids) == len(set(link_ids)) and wf["last_link_id"] >= max(link_ids)
    for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        out = nodes[src]["outputs"][src_slot]
        inp = nodes[dst]["inputs"][dst_slot]
        assert out["type"] == kind == outputs_of(nodes[src]["type"])[src_slot], f"link {link_id}"
        # an input may take several types ("FADEMEM_MODEL,MODEL"): the link carries one of them
        assert kind in inp["type"].split(","), \
            f"link {link_id}: {kind} into {nodes[dst]['type']}.{inp['name']} ({inp['type']})"
        assert inp["link"] == link_id and link_id in out["links"], f"link {link_id} not mirrored on its nodes"
    for node in wf["nodes"]:  # every required socket is connected, every listed link exists
        if node["type"] in UI_ONLY:
            continue
        required = required_names(node["type"])
        for inp in node["inputs"]:
            if inp["name"] in required:
                assert inp["link"] is not None, f"{name}: {node['type']}.{inp['name']} unconnected"
            if inp["link"] is not None:
                assert inp["link"] in link_ids
        for out in node["outputs"]:
            assert set(out["links"]) <= set(link_ids)


def ui_to_api(wf: dict) -> dict:
    """Convert a UI workflow the way the frontend does (input order from the definitions)."""
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {lk[0]: lk for lk in wf["links"]}
    graph = {}
    for node in wf["nodes"]:
        if node["type"] in UI_ONLY:
            continue
        values = list(node["widgets_values"])
        sockets = {i["name"]: i["link"] for i in node["inputs"]}
        inputs = {}
        for name, kind, opts in inputs_of(node["type"]):
            if is_widget(kind):
                inputs[name] = values.pop(0)
                if opts.get("control_after_generate") or opts.get("image_upload") or opts.get("video_upload"):
                    values.pop(0)  # UI-only entries: the seed's control, an upload button
            elif sockets.get(name) is not None:
                lk = links[sockets[name]]
                assert lk[1] in nodes
                inputs[name] = [str(lk[1]), lk[2]]
        graph[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return graph


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_api_twin_matches_the_ui_workflow(name):
    twin = json.loads((ROOT / "tests" / "api_graphs" / f"{name}.json").read_text())
    converted = ui_to_api(load(name))
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in twin.items()} == converted


def nodes_of(wf: dict, kind: str) -> list[dict]:
    return [n for n in wf["nodes"] if n["type"] == kind]


def test_t2v_is_a_60_second_fademem_run_on_longlive():
    wf = load("fademem_t2v_60s")
    (loader,) = nodes_of(wf, "FadeMemModelLoader")
    assert loader["widgets_values"][:2] == ["longlive_base.pt", "lora.pt"]
    (sampler,) = nodes_of(wf, "FadeMemStreamingSave")
    assert sampler["widgets_values"][:3] == [832, 480, 957]  # 240 latent frames, ~60 s at 16 fps
    assert sampler["widgets_values"][-4:] == [False, "video/fademem_60s", 0, "auto"]  # one file
    (cache,) = nodes_of(wf, "FadeMemCache")
    assert cache["widgets_values"][:3] == [12, 0.3, True]
    assert nodes_of(wf, "CLIPLoader")[0]["widgets_values"][1] == "wan"
    vae_links = {lk[0] for lk in wf["links"] if lk[5] == "VAE"}
    assert [i["link"] for i in sampler["inputs"] if i["name"] == "vae"][0] in vae_links
    # the shipped default decodes while it samples: no node ever holds the 957 frames
    assert not [n for n in wf["nodes"] if n["type"] in ("VAEDecode", "CreateVideo", "SaveVideo")]


def test_watch_it_grow_runs_until_cancel_in_segments():
    wf = load("fademem_watch_it_grow")
    (sampler,) = nodes_of(wf, "FadeMemStreamingSave")
    until_cancel, prefix, segment, kind = sampler["widgets_values"][-4:]
    assert kind == "auto"  # the sampler the weights record, else LongLive's few-step schedule
    assert until_cancel is True and segment == 10 and prefix.startswith("video/")
    (cache,) = nodes_of(wf, "FadeMemCache")  # bounded memory: the only kind that can run on
    assert cache["widgets_values"][:3] == [12, 0.3, True]


def test_template_index_describes_every_workflow():
    (category,) = json.loads(INDEX.read_text())
    assert category["moduleName"] == "fademem" and category["type"] == "video"
    templates = {t["name"]: t for t in category["templates"]}
    assert set(templates) == WORKFLOWS
    for name, t in templates.items():
        assert len(t["title"]) > 5 and len(t["description"]) > 20
        assert (INDEX.parent / t["thumbnail"]).resolve() == (ROOT / "workflows" / f"{name}.jpg")
        assert (t["mediaType"], t["mediaSubtype"]) == ("image", "jpg")
        named = set()
        for node in load(name)["nodes"]:
            for (kind, input_name), _files in MODEL_FILE_INPUTS.items():
                if node["type"] == kind and input_name.endswith("_name"):  # models, not the input clip
                    names = [n for n, k, _ in inputs_of(kind) if is_widget(k)]
                    named.add(node["widgets_values"][names.index(input_name)])
        assert set(t["models"]) == named - {"None", EMBEDDED}, name  # the embedded model is no download


def test_side_by_side_uses_the_same_seed_for_both_memories():
    wf = load("fademem_vs_longlive_side_by_side")
    samplers = nodes_of(wf, "FadeMemSampler")
    assert len(samplers) == 2
    a, b = (s["widgets_values"] for s in samplers)
    assert a[:10] == b[:10] and a[7] == "fixed"  # same settings, same seed, not re-randomised
    # each memory switches prompts its own way: the sink + window one exactly as LongLive does
    assert (a[10], b[10]) == ("recache", "longlive")
    (base,) = nodes_of(wf, "FadeMemBaselineCache")
    assert base["widgets_values"][:3] == ["sink_window", 3, 9]
    caches = {lk[1] for lk in wf["links"] if lk[5] == "FADEMEM_CACHE"}
    assert len(caches) == 2  # each sampler has its own memory
    prefixes = [n["widgets_values"][0] for n in nodes_of(wf, "SaveVideo")]
    assert len(prefixes) == 2 and len(set(prefixes)) == 2


def test_peers_side_by_side_runs_fademem_memrope_and_the_release_on_one_seed():
    wf = load("fademem_vs_peers_side_by_side")
    samplers = nodes_of(wf, "FadeMemSampler")
    assert len(samplers) == 3
    assert len({tuple(s["widgets_values"]) for s in samplers}) == 1  # same settings and seed
    assert samplers[0]["widgets_values"][7] == "fixed"
    kinds = [n["widgets_values"][0] for n in nodes_of(wf, "FadeMemBaselineCache")]
    assert kinds == ["memrope", "fademem_release"] and len(nodes_of(wf, "FadeMemCache")) == 1
    caches = {lk[1] for lk in wf["links"] if lk[5] == "FADEMEM_CACHE"}
    assert len(caches) == 3  # each sampler has its own memory
    prefixes = [n["widgets_values"][0] for n in nodes_of(wf, "SaveVideo")]
    assert len(set(prefixes)) == 3


def test_deep_forcing_side_by_side_runs_fademem_deep_forcing_and_memrope_on_one_seed():
    wf = load("fademem_vs_deep_forcing_side_by_side")
    samplers = nodes_of(wf, "FadeMemSampler")
    assert len(samplers) == 3
    assert len({tuple(s["widgets_values"]) for s in samplers}) == 1  # same settings and seed
    kinds = [n["widgets_values"][0] for n in nodes_of(wf, "FadeMemBaselineCache")]
    assert kinds == ["deep_forcing", "memrope"] and len(nodes_of(wf, "FadeMemCache")) == 1
    for node in nodes_of(wf, "FadeMemBaselineCache"):  # every widget at the kind's default
        assert all(v in (-1, 0.0, "default", True) for v in node["widgets_values"][1:])
    caches = {lk[1] for lk in wf["links"] if lk[5] == "FADEMEM_CACHE"}
    assert len(caches) == 3  # each sampler has its own memory
    prefixes = [n["widgets_values"][0] for n in nodes_of(wf, "SaveVideo")]
    assert len(set(prefixes)) == 3


def test_story_schedules_three_prompts():
    wf = load("fademem_prompt_story")
    (schedule,) = nodes_of(wf, "FadeMemPromptSchedule")
    connected = [i["name"] for i in schedule["inputs"] if i["link"] is not None]
    assert connected == ["conditioning_1", "conditioning_2", "conditioning_3"]
    starts = schedule["widgets_values"][:2]
    assert starts == sorted(starts) and starts[-1] < 957
    texts = [n["widgets_values"][0] for n in nodes_of(wf, "CLIPTextEncode")]
    assert len(set(texts)) == 3


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_cache_nodes_leave_room_for_the_live_preview(name):
    for node in nodes_of(load(name), "FadeMemCache"):
        widgets = len([n for n, k, _ in inputs_of("FadeMemCache") if is_widget(k)])
        assert node["size"][1] >= 26 + 24 * (1 + widgets) + 150, node["size"]


def test_tiny_world_workflow_needs_no_download():
    wf = load("fademem_tiny_world")
    (loader,) = nodes_of(wf, "FadeMemModelLoader")
    assert loader["widgets_values"][:2] == [EMBEDDED, "None"]
    (sampler,) = nodes_of(wf, "FadeMemSampler")
    assert sampler["widgets_values"][:3] == [64, 64, 957] and sampler["widgets_values"][-1] == "auto"
    kinds = {n["type"] for n in wf["nodes"]}
    assert {"FadeMemTinyWorldPrompt", "FadeMemCache", "FadeMemTinyWorldDecode", "CreateVideo",
            "SaveVideo"} <= kinds
    assert not kinds & {"CLIPLoader", "VAELoader", "VAEDecode", "LoadVideo"}  # nothing to download
    (template,) = [t for t in json.loads(INDEX.read_text())[0]["templates"]
                   if t["name"] == "fademem_tiny_world"]
    assert template["models"] == []


def test_layout_workflow_compares_betas_without_a_model():
    wf = load("fademem_memory_layout_betas")
    betas = [n["widgets_values"][1] for n in nodes_of(wf, "FadeMemCache")]
    assert len(set(betas)) == 3 and 0.3 in betas
    assert not nodes_of(wf, "FadeMemModelLoader")
    assert len(nodes_of(wf, "FadeMemMemoryLayout")) == 3 and nodes_of(wf, "SaveImage")


def test_continue_workflow_encodes_a_clip_into_the_prefix_and_saves_the_whole_clip():
    wf = load("fademem_continue_video")
    nodes = {n["id"]: n for n in wf["nodes"]}
    (sampler,) = nodes_of(wf, "FadeMemSampler")
    (prefix,) = [i for i in sampler["inputs"] if i["name"] == "prefix"]
    src = next(lk for lk in wf["links"] if lk[0] == prefix["link"])
    assert nodes[src[1]]["type"] == "VAEEncode"
    (encode,) = nodes_of(wf, "VAEEncode")
    pixels = next(lk for lk in wf["links"] if lk[0] == encode["inputs"][0]["link"])
    scale = nodes[pixels[1]]
    # the clip is brought to the sampler's size before encoding (cover + centre crop)
    assert scale["type"] == "ImageScale" and scale["widgets_values"][1:] == sampler["widgets_values"][:2] + ["center"]
    (decode,) = nodes_of(wf, "VAEDecode")
    samples = next(lk for lk in wf["links"] if lk[0] == decode["inputs"][0]["link"])
    assert (samples[1], samples[2]) == (sampler["id"], 1)  # with_prefix: input + continuation
    assert sampler["outputs"][1]["name"] == "with_prefix"
    assert nodes_of(wf, "CreateVideo")[0]["widgets_values"] == [16.0]


def test_readme_names_every_model_file_the_workflows_use():
    doc = (ROOT / "docs" / "sections" / "nodes.md").read_text()
    used = set()
    for name in WORKFLOWS:
        for node in load(name)["nodes"]:
            for (kind, input_name), _files in MODEL_FILE_INPUTS.items():
                if node["type"] == kind:
                    names = [n for n, k, _ in inputs_of(kind) if is_widget(k)]
                    used.add(node["widgets_values"][names.index(input_name)])
    used.discard("None")
    assert used and all(f in doc for f in used), used - {f for f in used if f in doc}
    for name in WORKFLOWS:  # and shows a picture of each graph
        assert f"images/workflow_{name}.png" in doc
        assert (ROOT / "docs" / "images" / f"workflow_{name}.png").is_file()


def test_fixture_is_the_real_object_info():
    assert CORE_INFO["comfyui_version"] == "0.3.64"
    # the fixture keeps what the frontend needs: order, types, ranges
    assert CORE["CreateVideo"]["input"]["required"]["fps"][1]["max"] == 120.0
    assert "wan" in CORE["CLIPLoader"]["input"]["required"]["type"][0]
