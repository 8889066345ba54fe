"""The pack in the REAL ComfyUI frontend, in headless Chromium (needs COMFYUI_PATH and a browser).

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/its/python pytest tests/test_frontend_browser.py

ComfyUI is started exactly as in tests/test_comfy_integration.py (its ``comfy`` fixture is reused:
--cpu on 127.0.0.1, a temporary --base-directory with the pack linked into custom_nodes).  Empty
placeholder files named like the shipped workflows' models are added to that folder so the model
combos hold known names.  Chromium is driven through chromedriver's W3C WebDriver HTTP protocol
with urllib (no selenium needed).  It checks, in the frontend that ComfyUI serves:
  - each shipped workflow loads through ``app.loadGraphData``: every node type registered (no
    missing-node placeholder), no error dialog, toast or console error, widget values and links
    exactly as in the file;
  - the live beta preview: real mouse clicks on a FadeMem Cache node's beta slider, budget arrow
    and anchor toggle make the extension fetch /fademem/plan again and redraw the node (the plan it
    holds follows the widgets, the drawn pixels change);
  - Browse Templates lists the pack's workflows.
With FADEMEM_WRITE_IMAGES=1 the screenshots also replace docs/images/workflow_<name>.png,
docs/images/preview_beta_*.png and the template thumbnails workflows/<name>.jpg.
Browser and chromedriver: CHROME_BIN / CHROMEDRIVER, else chromium and chromedriver on PATH.
Every wait is bounded.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.pack import ROOT

if not os.environ.get("COMFYUI_PATH"):
    pytest.skip("COMFYUI_PATH is not set: the real-frontend browser test was SKIPPED "
                "(see 'Development' in the README to run it)", allow_module_level=True)
CHROME = os.environ.get("CHROME_BIN") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
if not (CHROME and CHROMEDRIVER and os.path.exists(CHROME) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(f"no headless browser (chromium: {CHROME}, chromedriver: {CHROMEDRIVER}): the "
                "real-frontend browser test was SKIPPED", allow_module_level=True)

from tests.support.comfy_host import free_port  # noqa: E402

WORKFLOWS = sorted(p.stem for p in (ROOT / "workflows").glob("*.json"))
WRITE_IMAGES = os.environ.get("FADEMEM_WRITE_IMAGES") == "1"
# the model names the shipped workflows select (scripts/make_workflows.py)
PLACEHOLDER_MODELS = ("diffusion_models/longlive_base.pt", "loras/lora.pt",
                      "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "vae/wan_2.1_vae.safetensors")
# the clip the continue-a-video workflow's Load Video names: a real little mp4 in input/, so the
# node's video preview loads (an empty file would be a console error)
INPUT_CLIP = "fademem_clip.mp4"
PAGE_S = 120
SCRIPT_S = 60
MARGIN = 24
OVERLAY = 120
PREVIEW_HEIGHT = 150  # web/layout_draw.js


class WebDriver:
    """A minimal W3C WebDriver client for chromedriver (only what these tests use)."""

    def __init__(self, width: int = 1600, height: int = 1000):
        port = free_port()
        self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        self.session = None
        try:
            self._start(width, height)
        except BaseException:
            self.quit()
            raise

    def _start(self, width: int, height: int) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status", timeout=5)["ready"]:
                    break
            except (urllib.error.URLError, ConnectionError, AssertionError):
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, "chromedriver did not start"
            time.sleep(0.3)
        args = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--force-device-scale-factor=1", f"--window-size={width},{height}"]
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROME, "args": args}}
        self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}},
                                  timeout=60)["sessionId"]
        self._call("POST", self._s("/timeouts"), {"script": SCRIPT_S * 1000, "pageLoad": PAGE_S * 1000})

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def _call(self, method: str, path: str, body=None, timeout: float = SCRIPT_S + 30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            value = json.loads(e.read()).get("value", {})
            raise AssertionError(f"WebDriver {path}: {value.get('error')}: "
                                 f"{str(value.get('message'))[:2000]}") from None

    def open(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url}, timeout=PAGE_S + 30)

    def js(self, script: str, *args):
        """Run ``script`` (a function body; its arguments are ``args``); returns its result."""
        return self._call("POST", self._s("/execute/sync"),
                          {"script": "const args = Array.from(arguments);\n" + script, "args": list(args)})

    def js_async(self, body: str, *args):
        """Run ``body`` (may await) as an async function of ``args``; returns its result."""
        script = ("const done = arguments[arguments.length - 1];"
                  f"(async (...args) => {{ {body} }})(...Array.from(arguments).slice(0, -1))"
                  ".then(done, (e) => done({__error: String(e && e.stack || e)}));")
        out = self._call("POST", self._s("/execute/async"), {"script": script, "args": list(args)})
        assert not (isinstance(out, dict) and "__error" in out), out and out.get("__error")
        return out

    def resize(self, width: int, height: int) -> None:
        self._call("POST", self._s("/window/rect"), {"width": width, "height": height})

    def move_mouse(self, x: float, y: float) -> None:
        move = {"type": "pointerMove", "x": int(round(x)), "y": int(round(y)), "origin": "viewport",
                "duration": 0}
        self._call("POST", self._s("/actions"), {"actions": [
            {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [move]}]})

    def click(self, x: float, y: float) -> None:
        """A real left click (pointer down/up) at viewport pixel (x, y)."""
        move = {"type": "pointerMove", "x": int(round(x)), "y": int(round(y)), "origin": "viewport",
                "duration": 0}
        actions = [move, {"type": "pointerDown", "button": 0}, {"type": "pause", "duration": 60},
                   {"type": "pointerUp", "button": 0}]
        self._call("POST", self._s("/actions"), {"actions": [
            {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": actions}]})

    def screenshot(self):
        from PIL import Image

        png = base64.b64decode(self._call("GET", self._s("/screenshot")))
        return Image.open(io.BytesIO(png)).convert("RGB")

    def quit(self) -> None:
        try:
            if self.session:
                self._call("DELETE", self._s(""), timeout=30)
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# page-side helpers, defined once in the page: errors seen, graph read-back, view placement
PAGE_HELPERS = r"""
window.__fm = {
  errors: [],
  plans: [],  // every /fademem/plan request the page made (api.fetchApi goes through fetch)
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  notices() {  // visible dialogs, toasts and alerts: where the frontend reports missing nodes
    const sel = '[role=dialog], [role=alertdialog], [role=alert], .p-dialog, .p-toast-message';
    return [...document.querySelectorAll(sel)].filter((e) => e.offsetParent !== null || e.getClientRects().length)
      .map((e) => e.innerText.trim()).filter((t) => t);
  },
  linkList() {
    const links = app.graph.links;
    const all = links instanceof Map ? [...links.values()] : Object.values(links || {});
    // ids as numbers: some frontends keep the node ids of a loaded file as strings
    return all.filter(Boolean).map((l) => [+l.id, +l.origin_id, l.origin_slot, +l.target_id, l.target_slot, l.type]);
  },
  readBack() {
    return {
      nodes: app.graph._nodes.map((n) => ({
        id: +n.id, type: n.type, title: n.title, registered: !!LiteGraph.registered_node_types[n.type],
        has_errors: !!n.has_errors, widgets: (n.widgets || []).map((w) => [w.name, w.value]),
        saved: n.serialize().widgets_values ?? [],  // what the frontend writes into a workflow
        plan: n.__fademem?.plan ? { ...n.__fademem.plan, history: undefined } : null,
      })),
      links: this.linkList(), errors: [...this.errors], notices: this.notices(),
    };
  },
  // place the view so that graph box [x0, y0, x1, y1] sits at `margin` px, scale 1; return the
  // box in viewport pixels
  place(box, margin) {
    const ds = app.canvas.ds;
    ds.scale = 1;
    ds.offset[0] = margin - box[0];
    ds.offset[1] = margin - box[1];
    app.canvas.setDirty(true, true);
    return this.toViewport(box);
  },
  toViewport(box) {
    const r = app.canvas.canvas.getBoundingClientRect();
    const a = app.canvas.ds.convertOffsetToCanvas([box[0], box[1]]);
    const b = app.canvas.ds.convertOffsetToCanvas([box[2], box[3]]);
    return [r.left + a[0], r.top + a[1], r.left + b[0], r.top + b[1]];
  },
  graphBox(nodes) {
    const th = LiteGraph.NODE_TITLE_HEIGHT || 30;
    const xs0 = nodes.map((n) => n.pos[0]), ys0 = nodes.map((n) => n.pos[1] - th);
    const xs1 = nodes.map((n) => n.pos[0] + n.size[0]), ys1 = nodes.map((n) => n.pos[1] + n.size[1]);
    return [Math.min(...xs0), Math.min(...ys0), Math.max(...xs1), Math.max(...ys1)];
  },
};
const origError = console.error;
console.error = function (...a) { window.__fm.errors.push(a.map(String).join(" ").slice(0, 500)); return origError.apply(this, a); };
window.addEventListener("error", (e) => window.__fm.errors.push(String(e.message)));
const origFetch = window.fetch;
window.fetch = function (input, ...rest) {
  const url = String(input?.url ?? input);
  if (url.includes("/fademem/plan")) window.__fm.plans.push(url);
  return origFetch.call(this, input, ...rest);
};
"""


def post_settings(url: str, settings: dict) -> None:
    req = urllib.request.Request(url + "/api/settings", data=json.dumps(settings).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200


def write_input_clip(path: Path) -> None:
    """A 2 s, 16 fps clip: a colour gradient drifting sideways."""
    import torch

    from fademem_core.rollout.video import Mp4Writer

    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.linspace(0, 1, 208)
    with Mp4Writer(path, fps=16) as mp4:
        for t in range(32):
            red = (x + t / 32) % 1.0
            frame = torch.stack([red[None].expand(120, 208), x.flip(0)[None].expand(120, 208),
                                 torch.full((120, 208), 0.5)], dim=-1)
            mp4.write((frame * 255).round().to(torch.uint8)[None])


@pytest.fixture(scope="module")
def page(comfy):  # comfy: the real-ComfyUI server fixture (conftest.py)
    for name in PLACEHOLDER_MODELS:
        path = comfy.base / "models" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    write_input_clip(comfy.base / "input" / INPUT_CLIP)
    # no first-run template dialog, no minimap or render statistics over the graph
    post_settings(comfy.url, {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False,
                              "Comfy.Graph.CanvasInfo": False})
    browser = WebDriver()
    try:
        browser.open(comfy.url + "/")
        deadline = time.monotonic() + PAGE_S
        ready = "return !!(window.app && app.graph && app.canvas && app.extensionManager && window.LiteGraph)"
        while not browser.js(ready):
            assert time.monotonic() < deadline, f"the frontend did not start in {PAGE_S} s\n{comfy.log_tail()}"
            time.sleep(0.5)
        browser.js(PAGE_HELPERS)
        browser.version = browser.js("return window.__COMFYUI_FRONTEND_VERSION__ || null")
        # focus mode: no menus or side bars over the graph in the pictures
        browser.js_async("try { await app.extensionManager.command.execute('Workspace.ToggleFocusMode'); }"
                         "catch (e) { console.warn(e); } await __fm.sleep(500);")
        print(f"\nComfyUI frontend {browser.version}, {CHROME}")
        yield browser
    finally:
        browser.quit()


def test_running_versions_are_the_declared_ones(comfy, page):
    """What this test runs against is recorded; pyproject.toml declares the oldest of it."""
    checked = json.loads((ROOT / "tests" / "fixtures" / "checked_versions.json").read_text())
    status, stats = comfy.get_json("/system_stats")
    assert status == 200
    assert stats["system"]["comfyui_version"] in checked["comfyui"], stats["system"]
    assert page.version in checked["frontend"], page.version


def load(page: WebDriver, name: str) -> dict:
    wf = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    return page.js_async("""
const [wf, name] = args;
__fm.errors.length = 0;
await app.loadGraphData(wf, true, true, name);
await __fm.sleep(1500);  // the preview's debounced /fademem/plan round trip
return __fm.readBack();
""", wf, name)


def save_image(image, out: Path, **options) -> None:
    """Write ``image`` atomically (temp file, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    image.save(tmp, **options)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)


def shoot(page: WebDriver, nodes_js: str):
    """Screenshot of the nodes selected by ``nodes_js`` (a JS expression) at scale 1."""
    box = page.js(f"return __fm.graphBox({nodes_js})")
    width, height = box[2] - box[0] + 2 * MARGIN, box[3] - box[1] + 2 * MARGIN
    size = page.js("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
    # OVERLAY px more than the picture: the frontend's corner buttons stay outside the crop
    page.resize(int(max(800, width + OVERLAY) + size[0]), int(max(500, height + OVERLAY) + size[1]))
    page.move_mouse(1, 1)  # no hover highlight or tooltip in the picture
    time.sleep(0.5)  # the canvas follows the window's resize event
    view = page.js_async(f"const v = __fm.place(args[0], {MARGIN}); await __fm.sleep(600); return v;", box)
    shot = page.screenshot()
    crop = (max(0, int(view[0]) - MARGIN), max(0, int(view[1]) - MARGIN),
            min(shot.width, int(view[2]) + MARGIN), min(shot.height, int(view[3]) + MARGIN))
    return shot.crop(crop)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_loads_intact(page, name, tmp_path):
    wf = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    got = load(page, name)
    assert not got["notices"], f"{name}: the frontend showed {got['notices']}"
    assert not got["errors"], f"{name}: console errors while loading: {got['errors']}"
    nodes = {n["id"]: n for n in got["nodes"]}
    assert sorted(nodes) == sorted(n["id"] for n in wf["nodes"])
    for node in wf["nodes"]:
        seen = nodes[node["id"]]
        where = f"{name}: node {node['id']} {node['type']}"
        assert seen["type"] == node["type"] and seen["registered"], f"{where}: missing in the frontend"
        assert not seen["has_errors"], f"{where}: flagged with errors"
        # the file holds exactly what the frontend itself would save for this node (with the
        # UI-only entries some core nodes have, e.g. Load Video's upload button)
        values = seen["saved"]
        expected = node.get("widgets_values", [])
        assert len(values) == len(expected), f"{where}: saved {values} ({seen['widgets']}) vs file {expected}"
        for value, want in zip(values, expected):
            assert value == (pytest.approx(want) if isinstance(want, float) else want), \
                f"{where}: saved {values} ({seen['widgets']}) vs file {expected}"
    assert sorted(map(tuple, got["links"])) == sorted(tuple(lk) for lk in wf["links"])
    for node in got["nodes"]:
        if node["type"] == "FadeMemCache":  # the preview planned this node's own values
            budget, beta, anchor = (dict(node["widgets"])[k] for k in ("budget", "beta", "anchor"))
            plan = node["plan"]
            assert plan and not plan.get("error"), f"{name}: no layout on {node['title']}: {plan}"
            assert (plan["budget"], plan["beta"], plan["anchor"]) == (budget, pytest.approx(beta), anchor)
            assert len(plan["entries"]) == budget
    image = shoot(page, "app.graph._nodes")
    assert image.width > 300 and image.height > 200
    save_image(image, tmp_path / f"workflow_{name}.png")
    if WRITE_IMAGES:
        save_image(image, ROOT / "docs" / "images" / f"workflow_{name}.png", optimize=True)
        # the Browse Templates card: a 4:3 part of the picture around the first FadeMem Cache
        box, cache = page.js("const c = app.graph._nodes.find((n) => n.type === 'FadeMemCache');"
                             "return [__fm.graphBox(app.graph._nodes), c ? c.pos[0] + c.size[0] / 2 : null]")
        centre = image.width / 2 if cache is None else cache - box[0] + MARGIN
        width = min(image.width, round(image.height * 4 / 3))
        left = int(min(max(0, centre - width / 2), image.width - width))
        thumb = image.crop((left, 0, left + width, image.height))
        thumb.thumbnail((640, 480))
        save_image(thumb, ROOT / "workflows" / f"{name}.jpg", quality=88)


PREVIEW_STATE = """
const node = app.graph.getNodeById(args[0]);
const w = Object.fromEntries(node.widgets.map((x) => [x.name, x]));
const plan = node.__fademem.plan;
const top = Math.max(...node.widgets.map((x) => (x.last_y ?? x.y) + 24));
const c = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] + top]);
const s = app.canvas.ds.scale;
const px = app.canvas.canvas.getContext("2d").getImageData(Math.round(c[0]), Math.round(c[1]),
  Math.round(node.size[0] * s), Math.round(%d * s)).data;
let hash = 0;
for (let i = 0; i < px.length; i += 4) hash = (hash * 31 + px[i] * 7 + px[i + 1] * 3 + px[i + 2]) >>> 0;
const box = __fm.toViewport([node.pos[0], node.pos[1], node.pos[0] + node.size[0], node.pos[1] + node.size[1]]);
const requests = [...__fm.plans];
return {budget: w.budget.value, beta: w.beta.value, anchor: w.anchor.value, hash, box, requests,
  plan: plan && {...plan, history: (plan.history || []).length},
  rows: Object.fromEntries(node.widgets.map((x) => [x.name, x.last_y ?? x.y]))};
""" % PREVIEW_HEIGHT


def wait_preview(page: WebDriver, node_id: int, done, what: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = page.js(PREVIEW_STATE, node_id)
        if done(state):
            return state
        assert time.monotonic() < deadline, f"the preview did not follow {what}: {state}"
        time.sleep(0.2)


def test_live_beta_preview_follows_real_clicks(page, tmp_path):
    name = "fademem_t2v_60s"
    got = load(page, name)
    (cache,) = [n for n in got["nodes"] if n["type"] == "FadeMemCache"]
    node_id = cache["id"]
    shoot(page, "app.graph._nodes")  # the whole graph at scale 1: clicks land where drawn
    before = wait_preview(page, node_id, lambda s: s["plan"] and s["plan"]["beta"] == s["beta"], "loading")
    assert before["beta"] == pytest.approx(0.3) and len(before["plan"]["entries"]) == before["budget"] == 12
    images = {"0.30": shoot(page, f"[app.graph.getNodeById({node_id})]")}
    state = page.js(PREVIEW_STATE, node_id)  # after shoot() the view moved: click where it is now
    left, top, right, _ = state["box"]
    width = right - left

    def row_y(widget: str) -> float:
        return top + state["rows"][widget] + 10

    # beta: a click on the slider at 90 % of its track (litegraph: 15 px margins)
    page.click(left + 15 + 0.9 * (width - 30), row_y("beta"))
    after = wait_preview(page, node_id, lambda s: s["beta"] != before["beta"] and s["plan"]
                         and s["plan"]["beta"] == pytest.approx(s["beta"]), "a click on beta")
    assert 0.8 < after["beta"] <= 1.0, after["beta"]
    assert any(f"beta={after['plan']['beta']}" in u for u in after["requests"][len(before["requests"]):]), \
        f"no new /fademem/plan request for beta {after['beta']}: {after['requests']}"
    assert after["hash"] != before["hash"], "the node was not redrawn"
    assert after["plan"]["entries"] != before["plan"]["entries"]
    images[f"{after['beta']:.2f}"] = shoot(page, f"[app.graph.getNodeById({node_id})]")

    # budget (M): the right arrow of the number widget adds one step
    state = page.js(PREVIEW_STATE, node_id)
    left, top, right, _ = state["box"]
    page.click(right - 22, row_y("budget"))
    m13 = wait_preview(page, node_id, lambda s: s["budget"] == 13 and s["plan"]["budget"] == 13, "a click on M")
    assert len(m13["plan"]["entries"]) == 13 and m13["hash"] != after["hash"]

    # anchor: a click on the toggle
    page.click(right - 40, row_y("anchor"))
    off = wait_preview(page, node_id, lambda s: s["anchor"] is False and s["plan"]["anchor"] is False,
                       "a click on anchor")
    assert len(off["plan"]["entries"]) == 13 and off["plan"]["entries"] != m13["plan"]["entries"]
    assert off["hash"] != m13["hash"]

    # the connected sampler's length: its right arrow adds 4 video frames = 1 latent frame
    shoot(page, "app.graph._nodes")
    sampler = page.js("""
const n = app.graph._nodes.find((x) => x.type === 'FadeMemSampler' || x.type === 'FadeMemStreamingSave');
const w = n.widgets.find((x) => x.name === 'length');
return {box: __fm.toViewport([n.pos[0], n.pos[1], n.pos[0] + n.size[0], n.pos[1] + n.size[1]]),
        y: w.last_y ?? w.y, length: w.value};""")
    assert sampler["length"] == 957
    page.click(sampler["box"][2] - 22, sampler["box"][1] + sampler["y"] + 10)
    longer = wait_preview(page, node_id, lambda s: s["plan"]["frames"] == 241, "the sampler's length")
    assert any("frames=241" in u for u in longer["requests"])
    for label, image in images.items():
        save_image(image, tmp_path / f"preview_beta_{label}.png")
        if WRITE_IMAGES:
            save_image(image, ROOT / "docs" / "images" / f"preview_beta_{label}.png", optimize=True)


def test_a_new_cache_node_draws_its_default_layout(page):
    """A FadeMem Cache added as from the node library (not loaded from a file)."""
    load(page, "fademem_memory_layout_betas")
    got = page.js_async("""
const node = LiteGraph.createNode("FadeMemCache");
node.pos = [1400, 900];
app.graph.add(node);
app.canvas.setDirty(true, true);
for (let i = 0; i < 50 && !node.__fademem?.plan; i++) await __fm.sleep(100);
return {size: [...node.size], min: node.computeSize(), plan: node.__fademem?.plan && {...node.__fademem.plan, history: 0}};
""")
    plan = got["plan"]
    assert plan and (plan["frames"], plan["budget"], plan["beta"], plan["anchor"]) == (240, 12, 0.3, True), plan
    assert len(plan["entries"]) == 12
    assert got["size"][0] >= 320 and got["size"][1] >= got["min"][1] >= PREVIEW_HEIGHT, got


def test_samplers_model_input_takes_core_model_and_ours_in_the_frontend(page):
    """The union socket (FADEMEM_MODEL,MODEL): the frontend links core Load Diffusion Model and
    FadeMem Model Loader into both samplers' model input, and refuses other types (CLIP)."""
    load(page, "fademem_memory_layout_betas")
    got = page.js_async("""
const add = (type) => { const n = LiteGraph.createNode(type); app.graph.add(n); return n; };
const sources = {core: add("UNETLoader"), ours: add("FadeMemModelLoader"), clip: add("CLIPLoader")};
const out = {};
for (const type of ["FadeMemSampler", "FadeMemStreamingSave"]) {
  const sampler = add(type);
  const slot = sampler.inputs.findIndex((i) => i.name === "model");
  const linked = {};
  for (const [name, source] of Object.entries(sources)) {
    source.connect(0, sampler, slot);
    const link = sampler.inputs[slot].link;
    linked[name] = link != null ? app.graph.links[link]?.type ?? app.graph.links.get?.(link)?.type : null;
    sampler.disconnectInput(slot);
  }
  out[type] = {type: sampler.inputs[slot].type, linked};
}
return out;
""")
    for name, seen in got.items():
        assert seen["type"] == "FADEMEM_MODEL,MODEL", (name, seen)
        assert seen["linked"] == {"core": "MODEL", "ours": "FADEMEM_MODEL", "clip": None}, (name, seen)


def test_browse_templates_lists_the_workflows(page):
    page.resize(1900, 1300)  # every card in view: the dialog loads thumbnails lazily
    page.js_async("await app.extensionManager.command.execute('Comfy.BrowseTemplates'); await __fm.sleep(1500);")
    try:
        deadline = time.monotonic() + 20
        while True:  # open the pack's entry in the dialog's navigation, then read the cards
            shown = page.js("""
const dialog = [...document.querySelectorAll('[role=dialog], .p-dialog')].pop();
if (!dialog) return null;
const entry = [...dialog.querySelectorAll('*')].find((e) => e.children.length === 0
  && e.textContent.trim() === 'fademem');
if (entry) entry.click();
return dialog.innerText;
""")
            # with thumbnails (workflows/<name>.jpg) the pack's cards show them
            pictures = page.js("return [...[...document.querySelectorAll('[role=dialog], .p-dialog')].pop()"
                               ".querySelectorAll('img')].filter((i) => i.complete && i.naturalWidth > 0).length")
            thumbs = all((ROOT / "workflows" / f"{name}.jpg").exists() for name in WORKFLOWS)
            if shown and all(name in shown for name in WORKFLOWS) and (pictures >= len(WORKFLOWS) or not thumbs):
                break
            assert time.monotonic() < deadline, \
                f"Browse Templates does not list {WORKFLOWS} ({pictures} thumbnails): {shown!r:.3000}"
            time.sleep(0.5)
    finally:
        page.js("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}))")


def live_graph(node_id: str) -> dict:
    """The integration test's model, prompt and cache (as nodes 901..903, ids the page's graph
    does not use) and a tiny VAE into FadeMem Sampler + Streaming Save (``node_id``), run until
    Cancel in 2 s files, one latent frame (4 video frames) per chunk."""
    from tests.support.comfy_host import tiny_graph

    g = {f"90{k}": v for k, v in tiny_graph().items() if k in ("1", "2", "3")}
    g["904"] = {"class_type": "FadeMemTestTinyVAE", "inputs": {"seed": 1}}
    g[node_id] = {"class_type": "FadeMemStreamingSave", "inputs": {
        "model": ["901", 0], "positive": ["902", 0], "cache": ["903", 0], "vae": ["904", 0],
        "width": 64, "height": 32, "length": 9, "chunk": 1, "steps": 2, "shift": 5.0, "seed": 3,
        "context_noise": 0.0, "context_input": "clean", "switch": "auto", "until_cancel": True,
        "filename_prefix": "live/run", "segment_seconds": 2}}
    return g


LIVE_STATE = """
const n = app.graph.getNodeById(args[0]);
const p = n && n.__fadememLive;
return p ? {...p.state(), finals: p.files.filter((f) => f.type === "output").length} : null;
"""


def test_live_playback_grows_while_the_prompt_runs(comfy, page, tmp_path):
    """The streaming node's player, in the real frontend: the frames it can play (files whose
    length the browser read) grow chunk by chunk while /queue says the prompt is running."""
    from fademem_core.rollout.video import read_video_info

    page.resize(1600, 1000)
    node_id = page.js_async("""
app.graph.clear();
const n = LiteGraph.createNode("FadeMemStreamingSave");
n.pos = [60, 60];
app.graph.add(n);
await __fm.sleep(300);
return n.id;""")
    prompt_id = page.js_async("""
const api = window.comfyAPI.api.api;  // queued by this page: the live events come to it
const r = await fetch(api.apiURL("/prompt"), {method: "POST", headers: {"Content-Type": "application/json"},
  body: JSON.stringify({prompt: args[0], client_id: api.clientId})});
const body = await r.json();
if (!r.ok) throw new Error(JSON.stringify(body));
return body.prompt_id;""", live_graph(str(node_id)))
    seen, deadline = [], time.monotonic() + 120
    try:
        while True:
            state = page.js(LIVE_STATE, node_id)
            _, queue = comfy.get_json("/queue")
            running = any(item[1] == prompt_id for item in queue["queue_running"])
            if state and running:
                seen.append(state)
            grown = sorted({s["playable"] for s in seen if s["running"]})
            if len(grown) >= 4 and any(s["finals"] for s in seen) and seen[-1]["playable"] > 32:
                break
            assert time.monotonic() < deadline, f"the player did not grow: {seen[-5:]}\n{comfy.log_tail()}"
            time.sleep(0.25)
        playing = shoot(page, f"[app.graph.getNodeById({node_id})]")
    finally:  # Cancel, as the frontend sends it
        req = urllib.request.Request(comfy.url + "/interrupt", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
    entry = comfy.wait(prompt_id)
    # (a file counts once the browser has read its length, so the count starts at 0 and may
    # dip while a finished file takes its chunks' place)
    playable = [s["playable"] for s in seen]
    assert len(set(playable)) >= 4 and playable[-1] > playable[0] and max(playable) > 0, playable
    assert all(s["running"] and s["frames"] >= s["playable"] for s in seen)
    # a finished 2 s file stood in for its chunks while the run went on
    assert any(s["finals"] and s["files"] > s["finals"] for s in seen), seen
    names = [v["filename"] for v in entry["outputs"][str(node_id)]["images"]]
    total = sum(read_video_info(comfy.base / "output" / "live" / n)[0] for n in names)
    deadline = time.monotonic() + 30
    while True:  # the last event: the kept files only, all read by the browser
        final = page.js(LIVE_STATE, node_id)
        if not final["running"] and final["playable"] == final["frames"]:
            break
        assert time.monotonic() < deadline, final
        time.sleep(0.25)
    assert final["frames"] == total and final["files"] == final["finals"] == len(names)
    assert final["readyState"] >= 1, final  # the video element holds a file it can play
    save_image(playing, tmp_path / "live_playback.png")
    if WRITE_IMAGES:
        save_image(playing, ROOT / "docs" / "images" / "live_playback.png", optimize=True)
    print(f"\nlive player: playable frames while running {sorted(set(playable))[:12]}..., "
          f"{len(names)} files, {total} frames at the end")
