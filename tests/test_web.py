"""The live beta preview (web/) run for real with node on a recording canvas context.

The JS files are copied into a throw-away tree shaped like ComfyUI's static files
(/extensions/<pack>/..., /scripts/app.js, /scripts/api.js) with stub app/api modules, so the
extension's own imports resolve exactly as in the browser.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.pack import ROOT, node_module

routes = node_module("routes")
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node (JavaScript runtime) is not installed")

FAKE_CTX = """
export class FakeCtx {
  constructor() { this.ops = []; this.fillStyle = ""; this.strokeStyle = ""; this.font = ""; }
  fillRect(x, y, w, h) { this.ops.push({op: "fillRect", x, y, w, h, style: this.fillStyle}); }
  strokeRect(x, y, w, h) { this.ops.push({op: "strokeRect", x, y, w, h}); }
  fillText(text, x, y) { this.ops.push({op: "fillText", text, x, y, style: this.fillStyle}); }
  beginPath() { this.ops.push({op: "beginPath"}); }
  moveTo(x, y) { this.ops.push({op: "moveTo", x, y}); }
  lineTo(x, y) { this.ops.push({op: "lineTo", x, y}); }
  stroke() { this.ops.push({op: "stroke"}); }
}
"""
APP_STUB = """
export const app = {
  extensions: [],
  registerExtension(ext) { this.extensions.push(ext); },
  graph: { nodes: new Map(), links: new Map(), dirty: 0,
           getNodeById(id) { return this.nodes.get(id); }, setDirtyCanvas() { this.dirty++; } },
};
"""
API_STUB = """
export const api = {
  calls: [], reply: null, listeners: {},
  apiURL(path) { return "/api" + path; },
  addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); },
  emit(type, detail) { for (const fn of this.listeners[type] || []) fn({ detail }); },
  async fetchApi(url) {
    this.calls.push(url);
    const reply = this.reply;
    return { ok: reply.status === 200, status: reply.status, json: async () => reply.body };
  },
};
"""


@pytest.fixture
def web_tree(tmp_path):
    ext = tmp_path / "extensions" / "fademem"
    ext.mkdir(parents=True)
    for name in ("layout_draw.js", "fademem_preview.js", "fademem_live.js"):
        shutil.copy(ROOT / "web" / name, ext / name)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(APP_STUB)
    (tmp_path / "scripts" / "api.js").write_text(API_STUB)
    (tmp_path / "fake_ctx.js").write_text(FAKE_CTX)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    return tmp_path


def run_js(tree: Path, script: str) -> dict:
    path = tree / "run.js"
    path.write_text(script)
    done = subprocess.run([NODE, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def draw(tree: Path, plan, box=(10, 20, 300, 150)) -> dict:
    (tree / "plan.json").write_text(json.dumps(plan))
    return run_js(tree, f"""
import {{ readFileSync }} from "node:fs";
import {{ drawLayout }} from "./extensions/fademem/layout_draw.js";
import {{ FakeCtx }} from "./fake_ctx.js";
const plan = JSON.parse(readFileSync(new URL("./plan.json", import.meta.url)));
const ctx = new FakeCtx();
const summary = drawLayout(ctx, plan, {", ".join(map(str, box))});
console.log(JSON.stringify({{ summary, ops: ctx.ops }}));
""")


def test_draws_one_bar_per_entry_at_its_frames(web_tree):
    status, plan = routes.plan_response({"frames": "240", "budget": "12", "beta": "0.3", "anchor": "true"})
    assert status == 200
    x, y, w, h = 10, 20, 300, 150
    out = draw(web_tree, plan, (x, y, w, h))
    ops = out["ops"]
    assert ops[0] == {"op": "fillRect", "x": x, "y": y, "w": w, "h": h, "style": ops[0]["style"]}
    assert out["summary"] == {"kind": "layout", "entries": 12, "rows": len(plan["history"])}

    # independent geometry: 6 px padding, the timeline 0..frames over the inner width
    inner_x, inner_w = x + 6, w - 12
    scale = inner_w / 240
    bar_y = y + 22
    bars = [o for o in ops if o["op"] == "fillRect" and o["y"] == bar_y]
    assert len(bars) == len(plan["entries"])
    start = 0
    for bar, (mu, span) in zip(bars, plan["entries"]):
        assert bar["x"] == pytest.approx(inner_x + start * scale)
        assert bar["w"] == pytest.approx(max(1, span * scale - 1))
        start += span
    assert bars[-1]["x"] + plan["entries"][-1][1] * scale == pytest.approx(inner_x + inner_w)  # ends at the box edge
    ticks = [o["x"] for o in ops if o["op"] == "moveTo"]
    assert ticks == pytest.approx([inner_x + (mu + 0.5) * scale for mu, _ in plan["entries"]])

    # colours follow spans: all exact frames alike, the longest span different; the anchor
    # (entry 0, one frame at mu 0) orange, as in the Memory Layout node's picture
    assert plan["entries"][0] == [0, 1] and bars[0]["style"] == "#eb8c28"
    spans = [s for _, s in plan["entries"][1:]]
    by_span = {}
    for bar, span in zip(bars[1:], spans):
        by_span.setdefault(span, set()).add(bar["style"])
    assert all(len(styles) == 1 for styles in by_span.values())
    assert by_span[1] != by_span[max(spans)] and "#eb8c28" not in set().union(*by_span.values())
    history_first = [o for o in ops if o["op"] == "fillRect" and o["y"] > bar_y + 18 and o["x"] == bars[0]["x"]]
    assert history_first and all(o["style"] == "#eb8c28" for o in history_first)

    # the rollout rows: one rect per entry per history row, inside the box
    history_rects = [o for o in ops if o["op"] == "fillRect" and o["y"] > bar_y + 18]
    assert len(history_rects) == sum(len(row) for _, row in plan["history"])
    assert all(y <= r["y"] and r["y"] + r["h"] <= y + h for r in history_rects)
    texts = " ".join(o["text"] for o in ops if o["op"] == "fillText")
    assert "M=12" in texts and "\u03b2=0.30" in texts and "anchor on" in texts and "59.8 s" in texts  # 957 frames at 16 fps


def test_beta_changes_the_drawing(web_tree):
    bars = {}
    for beta in ("0.1", "1.0"):
        _, plan = routes.plan_response({"frames": "120", "budget": "10", "beta": beta})
        ops = draw(web_tree, plan)["ops"]
        bars[beta] = [round(o["w"], 3) for o in ops if o["op"] == "fillRect" and o["y"] == 42]
    assert len(bars["0.1"]) == len(bars["1.0"]) == 10
    assert bars["0.1"] != bars["1.0"]


def test_no_orange_without_anchor(web_tree):
    _, plan = routes.plan_response({"frames": "120", "budget": "10", "beta": "0.3", "anchor": "false"})
    assert plan["anchor"] is False
    styles = {o.get("style") for o in draw(web_tree, plan)["ops"] if o["op"] == "fillRect"}
    assert "#eb8c28" not in styles and len(styles) > 2


def test_error_and_waiting_states(web_tree):
    out = draw(web_tree, {"error": "beta must be a number in (0, 1], got 0.0"})
    assert out["summary"]["kind"] == "error"
    assert [o["text"] for o in out["ops"] if o["op"] == "fillText"] == [
        "FadeMem: beta must be a number in (0, 1], got 0.0"]
    assert sum(o["op"] == "fillRect" for o in out["ops"]) == 1  # only the background
    out = draw(web_tree, None)
    assert out["summary"]["kind"] == "waiting"


EXTENSION_SCRIPT = """
import { readFileSync } from "node:fs";
import { app } from "./scripts/app.js";
import { api } from "./scripts/api.js";
import { FakeCtx } from "./fake_ctx.js";
await import("./extensions/fademem/fademem_preview.js");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const replies = JSON.parse(readFileSync(new URL("./replies.json", import.meta.url)));
const [ext] = app.extensions;

function widget(name, value) { return { name, value, callback: null, last_y: 0, computeSize: () => [300, 20] }; }
class CacheNode {
  constructor() {
    this.widgets = [widget("budget", 12), widget("beta", 0.3), widget("anchor", true),
                    widget("operator", "weighted_average"), widget("positions", "absolute")];
    this.widgets.forEach((w, i) => { w.last_y = 4 + 24 * i; });
    this.size = [240, 130]; this.outputs = [{ links: [7] }]; this.graph = app.graph; this.flags = {};
  }
  computeSize() { return [240, 130]; }
  setSize(s) { this.size = s; }
}
class OtherNode { computeSize() { return [1, 1]; } }
const untouched = OtherNode.prototype.computeSize;
await ext.beforeRegisterNodeDef(OtherNode, { name: "KSampler" });
await ext.beforeRegisterNodeDef(CacheNode, { name: "FadeMemCache" });

// a sampler of 481 video frames (121 latent frames) downstream of the cache
app.graph.nodes.set(3, { widgets: [widget("length", 481)] });
app.graph.links.set(7, { target_id: 3 });

const node = new CacheNode();
api.reply = replies.first;
node.onNodeCreated();
await sleep(200);
const beta = node.widgets[1];
beta.value = 0.7;
api.reply = replies.second;
beta.callback(0.7); beta.callback(0.7);  // a drag fires many callbacks: debounced
await sleep(200);
const ctx = new FakeCtx();
node.size = [320, 300];
node.onDrawForeground(ctx);
api.reply = replies.bad;
node.widgets[0].value = 2;
node.widgets[0].callback(2);
await sleep(200);
const errCtx = new FakeCtx();
node.onDrawForeground(errCtx);
const loaded = new CacheNode();  // as loaded from a workflow saved with a small node
loaded.onNodeCreated();
loaded.size = [300, 100];
loaded.onConfigure({});
await sleep(100);
// the downstream sampler's length changes (no callback reaches the cache): seen when drawing
app.graph.nodes.get(3).widgets[0].value = 961;
api.reply = replies.first;
node.onDrawForeground(new FakeCtx()); node.onDrawForeground(new FakeCtx());  // frames in a row
await sleep(200);
node.onDrawForeground(new FakeCtx());  // up to date: no request
await sleep(100);
console.log(JSON.stringify({
  calls: api.calls, size: node.size, computed: node.computeSize(), loaded_size: loaded.size,
  other_untouched: OtherNode.prototype.computeSize === untouched,
  ops: ctx.ops, error_texts: errCtx.ops.filter((o) => o.op === "fillText").map((o) => o.text),
}));
"""


def test_extension_fetches_the_plan_and_redraws_on_beta(web_tree):
    first = routes.plan_response({"frames": "121", "budget": "12", "beta": "0.3", "anchor": "true"})
    second = routes.plan_response({"frames": "121", "budget": "12", "beta": "0.7", "anchor": "true"})
    bad = routes.plan_response({"frames": "121", "budget": "2", "beta": "0.7", "anchor": "true"})
    replies = {name: {"status": s, "body": b} for name, (s, b) in
               {"first": first, "second": second, "bad": bad}.items()}
    (web_tree / "replies.json").write_text(json.dumps(replies))
    out = run_js(web_tree, EXTENSION_SCRIPT)

    assert out["calls"] == [
        "/fademem/plan?frames=121&budget=12&beta=0.3&anchor=true",  # length 481 -> 121 latent frames
        "/fademem/plan?frames=121&budget=12&beta=0.7&anchor=true",  # one request for the whole drag
        "/fademem/plan?frames=121&budget=2&beta=0.7&anchor=true",
        "/fademem/plan?frames=121&budget=12&beta=0.3&anchor=true",  # the node loaded from a workflow
        "/fademem/plan?frames=241&budget=2&beta=0.7&anchor=true",  # the sampler's length became 961
    ]
    assert out["loaded_size"] == [300, 130 + 150]  # grown to fit the picture
    assert out["other_untouched"]
    assert out["computed"] == [240, 130 + 150]  # room for the picture under the widgets
    assert out["size"] == [320, 300]
    # drawn below the last widget (5 widgets, 24 px apart) with the beta=0.7 plan
    top = 4 + 24 * 4 + 20 + 4
    bars = [o for o in out["ops"] if o["op"] == "fillRect" and o["y"] == top + 22]
    assert len(bars) == 12
    scale = (320 - 12) / 121
    widths = [round(b["w"] + 1, 6) for b in bars]
    assert widths == [round(span * scale, 6) for _, span in second[1]["entries"]]
    assert out["error_texts"] == ["FadeMem: budget must be an integer >= 3, got 2"]


LIVE_SCRIPT = """
class FakeElement {
  constructor(tag) { this.tag = tag; this.style = {}; this.children = []; this.handlers = {};
    this.src = ""; this.currentTime = 0; this.duration = NaN; this.readyState = 0; this.ended = false; this.plays = 0; }
  append(...c) { this.children.push(...c); }
  addEventListener(t, fn, opts) { (this.handlers[t] ||= []).push({ fn, once: opts?.once }); }
  removeEventListener(t, fn) { this.handlers[t] = (this.handlers[t] || []).filter((h) => h.fn !== fn); }
  fire(t) { const hs = this.handlers[t] || []; this.handlers[t] = hs.filter((h) => !h.once); for (const h of hs) h.fn(); }
  play() { this.plays++; return Promise.resolve(); }
}
globalThis.document = { createElement: (tag) => new FakeElement(tag) };
const { app } = await import("./scripts/app.js");
const { api } = await import("./scripts/api.js");
await import("./extensions/fademem/fademem_live.js");
const widgets = [];
const node = { type: "FadeMemStreamingSave", size: [300, 200], computeSize: () => [300, 420],
  setSize(s) { this.size = s; }, addDOMWidget(name, type, el, opts) { const w = { name, type, el, opts }; widgets.push(w); return w; } };
const other = { type: "FadeMemSampler" };
app.graph.nodes.set("8", node);
app.graph.nodes.set("9", other);
for (const ext of app.extensions) ext.setup?.();
const file = (name, start, frames, type = "temp") => ({ filename: name, subfolder: "fademem_live/run_x", type, start, frames });
const out = {};
api.emit("fademem.live", { node: "9", fps: 16, running: true, frames: 9, files: [file("chunk_000001.mp4", 0, 9)] });
out.other = other.__fadememLive === undefined;
api.emit("fademem.live", { node: "8", fps: 16, running: true, frames: 9, files: [file("chunk_000001.mp4", 0, 9)] });
const p = node.__fadememLive;
out.widget = { count: widgets.length, serialize: widgets[0].serialize, opt: widgets[0].opts.serialize, size: node.size };
out.first = { src: p.video.src, probe: p.probe.src, state: p.state() };
p.probe.duration = 9 / 16; p.probe.fire("loadedmetadata");
out.afterProbe = p.state().playable;
const two = [file("chunk_000001.mp4", 0, 9), file("chunk_000002.mp4", 9, 12)];
api.emit("fademem.live", { node: "8", fps: 16, running: true, frames: 21, files: two });
p.probe.duration = 12 / 16; p.probe.fire("loadedmetadata");
out.two = p.state();
p.video.ended = true; p.video.fire("ended");  // chunk 1 played: chunk 2 next
p.video.ended = false; p.video.currentTime = 0.25;  // 4 frames into chunk 2: frame 13
out.playingSecond = p.video.src;
const replaced = [{ filename: "v_00001_.mp4", subfolder: "video", type: "output", start: 0, frames: 21 },
                  file("chunk_000003.mp4", 21, 12)];
api.emit("fademem.live", { node: "8", fps: 16, running: true, frames: 33, files: replaced });
out.replacedSrc = p.video.src;
p.video.fire("loadedmetadata");
out.seek = p.video.currentTime;
out.replacedPlayable = p.state().playable;  // the finished file is not read yet
p.probe.duration = 21 / 16; p.probe.fire("loadedmetadata");
p.probe.duration = 12 / 16; p.probe.fire("loadedmetadata");
out.replacedState = p.state();
p.video.currentTime = 1.3; p.video.ended = true; p.video.fire("ended");  // at the end of the finished file
p.video.currentTime = 0.75; p.video.fire("ended");  // and of chunk 3: it waits
out.waiting = p.video.src;
api.emit("fademem.live", { node: "8", fps: 16, running: false, frames: 45, files: [
  { filename: "v_00001_.mp4", subfolder: "video", type: "output", start: 0, frames: 45 }] });
out.final = { src: p.video.src, state: p.state(), caption: p.caption.textContent };
console.log(JSON.stringify(out));
"""


def test_live_player_follows_the_growing_list(web_tree):
    out = run_js(web_tree, LIVE_SCRIPT)
    url = "/api/view?filename={}&subfolder={}&type={}".format
    chunk = lambda n: url(f"chunk_00000{n}.mp4", "fademem_live%2Frun_x", "temp")  # noqa: E731
    final = url("v_00001_.mp4", "video", "output")
    assert out["other"]  # events for other nodes are not played
    assert out["widget"]["count"] == 1 and out["widget"]["serialize"] is False
    assert out["widget"]["opt"] is False and out["widget"]["size"] == [360, 420]
    # the first chunk plays at once; the browser reads its length, then it counts as playable
    assert out["first"]["src"] == chunk(1) == out["first"]["probe"]
    assert out["first"]["state"]["playable"] == 0 and out["first"]["state"]["frames"] == 9
    assert out["afterProbe"] == 9
    assert out["two"]["playable"] == 21 and out["two"]["files"] == 2
    assert out["playingSecond"] == chunk(2)  # the next file when one ends
    # the finished file replaces the chunks: it goes on at the same frame (13 = 13/16 s)
    assert out["replacedSrc"] == final and out["seek"] == 13 / 16
    assert out["replacedPlayable"] == 0  # neither file read yet
    assert out["replacedState"]["playable"] == 33 and out["replacedState"]["index"] == 0
    assert out["waiting"] == chunk(3)  # the last file ended: it waits for more
    assert out["final"]["src"] == final and out["final"]["state"]["running"] is False
    assert out["final"]["caption"] == "done: 45 frames (2.8 s) in 1 file(s)"
