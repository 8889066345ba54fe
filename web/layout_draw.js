// Pure drawing of a FadeMem memory layout on a 2D canvas context.
//
// No DOM, no ComfyUI: it only calls ctx.fillRect / fillText / strokeRect / beginPath / moveTo /
// lineTo / stroke and sets fillStyle / strokeStyle / font, so it runs in node on a fake context
// (tests/test_web.py).  The plan it draws comes from GET /fademem/plan (the Python planner):
//   { frames, budget, beta, anchor,
//     entries: [[mu, span], ...]             memory after `frames` latent frames, oldest first
//     history: [[t, [[mu, span], ...]], ...] memory after t frames, for some t (rows) }
// Entries are adjacent and ordered, so entry i covers frames [sum(span_<i), sum(span_<=i)).

export const PREVIEW_HEIGHT = 150;

const BACKGROUND = "#1b1d22";
const TEXT = "#d8dde6";
const DIM_TEXT = "#8a93a3";
const TICK = "#ffffff";
export const ANCHOR_COLOR = "#eb8c28"; // the first-frame anchor, orange as in the Memory Layout node

/** Colour of entry `i` of a row: the anchor (entry 0 when the plan keeps one) orange. */
function entryColor(plan, i, span, maxSpan) {
  return plan.anchor && i === 0 ? ANCHOR_COLOR : spanColor(span, maxSpan);
}

/** Colour of an entry: exact frames bright, long consolidated spans darker and bluer. */
export function spanColor(span, maxSpan) {
  const top = Math.max(1, maxSpan);
  const f = top <= 1 ? 0 : Math.log(span) / Math.log(top); // 0 for span 1 .. 1 for the longest
  const hue = Math.round(165 + 60 * f);
  const light = Math.round(62 - 30 * f);
  return `hsl(${hue}, 70%, ${light}%)`;
}

/**
 * Rectangles of entries on a timeline of `frames` latent frames mapped onto [x, x + w].
 * Returns [{x, w, centre, mu, span}] in the same order as `entries`.
 */
export function entryRects(entries, frames, x, w) {
  const scale = w / Math.max(1, frames);
  const rects = [];
  let start = 0;
  for (const [mu, span] of entries) {
    rects.push({ x: x + start * scale, w: span * scale, centre: x + (mu + 0.5) * scale, mu, span });
    start += span;
  }
  return rects;
}

/** Seconds of video for `frames` latent frames at 16 fps (4x temporal compression). */
export function latentSeconds(frames) {
  return (1 + 4 * (frames - 1)) / 16;
}

function header(plan) {
  const anchor = plan.anchor ? "anchor on" : "anchor off";
  return `M=${plan.budget}  \u03b2=${Number(plan.beta).toFixed(2)}  ${anchor}  \u00b7  ` +
    `${plan.frames} latent frames (${latentSeconds(plan.frames).toFixed(1)} s)`;
}

/**
 * Draw `plan` into the box (x, y, w, h).  `plan` may also be {error: "..."} or null (waiting),
 * in which case a one-line message is drawn.  Returns a summary of what was drawn.
 */
export function drawLayout(ctx, plan, x, y, w, h) {
  ctx.fillStyle = BACKGROUND;
  ctx.fillRect(x, y, w, h);
  ctx.font = "11px sans-serif";
  if (!plan || plan.error) {
    ctx.fillStyle = plan ? "#ff8080" : DIM_TEXT;
    const msg = plan ? `FadeMem: ${plan.error}` : "FadeMem: planning\u2026";
    ctx.fillText(msg, x + 6, y + 16);
    return { kind: plan ? "error" : "waiting", entries: 0, rows: 0 };
  }
  const pad = 6;
  const innerX = x + pad;
  const innerW = Math.max(1, w - 2 * pad);
  ctx.fillStyle = TEXT;
  ctx.fillText(header(plan), innerX, y + 14);

  // the final memory: one bar per entry, centre ticks at mu
  const barY = y + 22;
  const barH = 18;
  const maxSpan = Math.max(1, ...plan.entries.map((e) => e[1]));
  const rects = entryRects(plan.entries, plan.frames, innerX, innerW);
  rects.forEach((r, i) => {
    ctx.fillStyle = entryColor(plan, i, r.span, maxSpan);
    ctx.fillRect(r.x, barY, Math.max(1, r.w - 1), barH);
  });
  ctx.strokeStyle = TICK;
  ctx.beginPath();
  for (const r of rects) {
    ctx.moveTo(r.centre, barY);
    ctx.lineTo(r.centre, barY + barH);
  }
  ctx.stroke();

  // the rollout: one thin row per history step, time running downwards
  const histY = barY + barH + 8;
  const footer = 14;
  const histH = Math.max(0, y + h - footer - histY);
  const rows = plan.history || [];
  const rowH = rows.length ? histH / rows.length : 0;
  for (let i = 0; i < rows.length; i++) {
    const [, entries] = rows[i];
    entryRects(entries, plan.frames, innerX, innerW).forEach((r, j) => {
      ctx.fillStyle = entryColor(plan, j, r.span, maxSpan);
      ctx.fillRect(r.x, histY + i * rowH, Math.max(1, r.w - 1), Math.max(1, rowH - 0.5));
    });
  }
  ctx.fillStyle = DIM_TEXT;
  ctx.fillText(`${plan.entries.length} entries, longest span ${maxSpan} \u2014 time \u2193, frames \u2192`,
    innerX, y + h - 3);
  return { kind: "layout", entries: rects.length, rows: rows.length };
}
