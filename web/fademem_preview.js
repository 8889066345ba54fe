// FadeMem live beta preview: draws the memory layout on every FadeMemCache node and redraws it
// while the user drags beta or changes M / anchor, without running the graph.  The layout comes
// from the pack's Python planner through GET /fademem/plan; this file only asks and draws.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { drawLayout, PREVIEW_HEIGHT } from "./layout_draw.js";

const NODE = "FadeMemCache";
const WATCHED = ["budget", "beta", "anchor"];
const DEFAULT_FRAMES = 240; // 957 video frames = 60 s at 16 fps, the sampler's default
const DEBOUNCE_MS = 60;

function widget(node, name) {
  return (node.widgets || []).find((w) => w.name === name);
}

function graphLink(graph, id) {
  if (!graph || id == null) return null;
  if (typeof graph.getLink === "function") return graph.getLink(id);
  return graph.links instanceof Map ? graph.links.get(id) : graph.links?.[id];
}

/** Latent frames of the first connected sampler's length (video frames), else the default. */
export function previewFrames(node) {
  const graph = node.graph || app.graph;
  for (const id of node.outputs?.[0]?.links || []) {
    const link = graphLink(graph, id);
    const target = link && graph?.getNodeById?.(link.target_id);
    const length = target && widget(target, "length");
    if (length && Number(length.value) >= 1) return Math.floor((Number(length.value) - 1) / 4) + 1;
  }
  return DEFAULT_FRAMES;
}

/** Query string for the planner from the node's current widget values. */
export function planQuery(node) {
  return new URLSearchParams({
    frames: String(previewFrames(node)),
    budget: String(widget(node, "budget")?.value ?? 12),
    beta: String(widget(node, "beta")?.value ?? 0.3),
    anchor: String(Boolean(widget(node, "anchor")?.value ?? true)),
  }).toString();
}

async function fetchPlan(query) {
  try {
    const res = await api.fetchApi(`/fademem/plan?${query}`);
    const body = await res.json();
    return res.ok ? body : { error: body.error || `HTTP ${res.status}` };
  } catch (e) {
    return { error: String(e?.message || e) };
  }
}

function requestPlan(node) {
  const state = node.__fademem;
  clearTimeout(state.timer);
  state.pending = true;
  state.timer = setTimeout(async () => {
    state.pending = false;
    const query = planQuery(node);
    if (query === state.query && state.plan) return;
    state.query = query;
    const plan = await fetchPlan(query);
    if (state.query !== query) return; // a newer request superseded this one
    state.plan = plan;
    node.setDirtyCanvas?.(true, true);
    app.graph?.setDirtyCanvas?.(true, true);
  }, DEBOUNCE_MS);
  return state;
}

function widgetsBottom(node) {
  let bottom = 0;
  for (const w of node.widgets || []) {
    const y = w.last_y ?? w.y ?? 0;
    const h = w.computeSize ? w.computeSize(node.size[0])[1] : 20;
    bottom = Math.max(bottom, y + h);
  }
  return bottom + 4;
}

app.registerExtension({
  name: "FadeMem.BetaPreview",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE) return;
    const proto = nodeType.prototype;

    const onNodeCreated = proto.onNodeCreated;
    proto.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      this.__fademem = { plan: null, query: null, timer: null, pending: false };
      for (const name of WATCHED) {
        const w = widget(this, name);
        if (!w) continue;
        const callback = w.callback;
        w.callback = (...args) => {
          const out = callback?.apply(w, args);
          requestPlan(this);
          return out;
        };
      }
      const [width, height] = this.computeSize ? this.computeSize() : this.size;
      this.setSize?.([Math.max(width, 320), height]);
      requestPlan(this);
      return r;
    };

    const computeSize = proto.computeSize;
    proto.computeSize = function () {
      const size = computeSize ? computeSize.apply(this, arguments) : [320, 120];
      return [size[0], size[1] + PREVIEW_HEIGHT];
    };

    const onConfigure = proto.onConfigure;
    proto.onConfigure = function () {
      const r = onConfigure?.apply(this, arguments);
      const min = this.computeSize();
      if (this.size[1] < min[1]) this.setSize?.([Math.max(this.size[0], min[0]), min[1]]); // room to draw
      if (this.__fademem) requestPlan(this); // widget values were just restored
      return r;
    };

    const onConnectionsChange = proto.onConnectionsChange;
    proto.onConnectionsChange = function () {
      const r = onConnectionsChange?.apply(this, arguments);
      if (this.__fademem) requestPlan(this); // a new sampler may have another length
      return r;
    };

    const onDrawForeground = proto.onDrawForeground;
    proto.onDrawForeground = function (ctx) {
      const r = onDrawForeground?.apply(this, arguments);
      if (this.flags?.collapsed || !this.__fademem) return r;
      // the connected sampler's length has no hook here: notice its change when drawing (cheap)
      if (!this.__fademem.pending && planQuery(this) !== this.__fademem.query) requestPlan(this);
      const top = widgetsBottom(this);
      const h = Math.min(PREVIEW_HEIGHT, this.size[1] - top - 4);
      if (h > 40) drawLayout(ctx, this.__fademem.plan, 0, top, this.size[0], h);
      return r;
    };
  },
});
