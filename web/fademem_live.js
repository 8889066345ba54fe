// FadeMem live playback: while "FadeMem Sampler + Streaming Save" runs, its node plays the video
// made so far.  The node sends a "fademem.live" server event after every chunk, listing the
// playable files in order (finished segments, then one short mp4 per chunk of the open one; see
// fademem_core/rollout/live.py); this file only plays that list back to back on the node.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE = "FadeMemStreamingSave";
const EVENT = "fademem.live";
const PLAYER_HEIGHT = 220;

function viewUrl(file) {
  const q = new URLSearchParams({ filename: file.filename, subfolder: file.subfolder || "", type: file.type });
  return api.apiURL(`/view?${q}`);
}

/** Plays a growing list of files as one video; counts the frames it has loaded and can play. */
export class LivePlayer {
  constructor(node) {
    this.node = node;
    this.files = [];
    this.fps = 16;
    this.running = false;
    this.index = -1; // the file in the video element
    this.durations = new Map(); // url -> seconds, read from the file by the browser
    this.probing = null;
    this.root = document.createElement("div");
    this.root.style.cssText = "display:flex;flex-direction:column;width:100%;height:100%;gap:2px";
    this.video = document.createElement("video");
    Object.assign(this.video, { muted: true, autoplay: true, controls: true, playsInline: true });
    this.video.style.cssText = "width:100%;flex:1;min-height:0;background:#000;object-fit:contain";
    this.caption = document.createElement("div");
    this.caption.style.cssText = "font:11px sans-serif;color:#bbb;text-align:center";
    this.root.append(this.video, this.caption);
    this.probe = document.createElement("video");
    this.probe.preload = "metadata";
    this.probe.muted = true;
    this.video.addEventListener("ended", () => this.next());
    this.video.addEventListener("loadedmetadata", () => this.remember(this.files[this.index]?.url, this.video.duration));
  }

  /** Frames of the files whose length the browser has read (what can be played now). */
  get playableFrames() {
    return this.files.reduce((n, f) => n + (this.durations.has(f.url) ? f.frames : 0), 0);
  }

  state() {
    return {
      frames: this.files.reduce((n, f) => n + f.frames, 0),
      playable: this.playableFrames,
      files: this.files.length,
      running: this.running,
      index: this.index,
      readyState: this.video.readyState,
      src: this.video.currentSrc || this.video.src,
    };
  }

  /** The frame of the whole video now shown (to keep the place when files are replaced). */
  position() {
    const f = this.files[this.index];
    return f ? f.start + Math.round((this.video.currentTime || 0) * this.fps) : 0;
  }

  update(detail) {
    const oldUrl = this.files[this.index]?.url;
    const at = this.position();
    this.fps = detail.fps || this.fps;
    this.running = !!detail.running;
    this.files = (detail.files || []).map((f) => ({ ...f, url: viewUrl(f) }));
    if (oldUrl && this.files.some((f) => f.url === oldUrl)) {
      this.index = this.files.findIndex((f) => f.url === oldUrl);
    } else if (oldUrl) {
      // the chunk files shown were replaced by their finished segment: go on at the same frame
      const i = this.files.findIndex((f) => at >= f.start && at < f.start + f.frames);
      this.show(i >= 0 ? i : this.files.length - 1, i >= 0 ? (at - this.files[i].start) / this.fps : 0);
    } else if (this.files.length) {
      this.show(0, 0);
    }
    if (this.video.ended && this.index < this.files.length - 1) this.next(); // it waited for more
    this.caption.textContent = `${this.running ? "live" : "done"}: ${this.state().frames} frames ` +
      `(${(this.state().frames / this.fps).toFixed(1)} s) in ${this.files.length} file(s)`;
    this.probeNext();
  }

  show(i, seconds) {
    const f = this.files[i];
    if (!f) return;
    this.index = i;
    this.video.src = f.url;
    if (seconds > 0) {
      this.video.addEventListener("loadedmetadata", () => { this.video.currentTime = seconds; }, { once: true });
    }
    this.video.play?.().catch(() => {}); // autoplay may be refused: the controls still work
  }

  next() {
    if (this.index < this.files.length - 1) this.show(this.index + 1, 0);
  }

  remember(url, seconds) {
    if (url && Number.isFinite(seconds) && seconds > 0) this.durations.set(url, seconds);
  }

  /** Let the browser read the length of every file not yet read, one at a time. */
  probeNext() {
    if (this.probing) return;
    const f = this.files.find((x) => !this.durations.has(x.url));
    if (!f) return;
    this.probing = f.url;
    const done = () => {
      this.probe.removeEventListener("loadedmetadata", done);
      this.probe.removeEventListener("error", done);
      this.remember(f.url, this.probe.duration);
      if (!this.durations.has(f.url)) this.durations.set(f.url, NaN); // unreadable: not counted
      this.probing = null;
      this.probeNext();
    };
    this.probe.addEventListener("loadedmetadata", done);
    this.probe.addEventListener("error", done);
    this.probe.src = f.url;
  }
}

function playerOf(node) {
  if (node.__fadememLive) return node.__fadememLive;
  const player = new LivePlayer(node);
  const widget = node.addDOMWidget("fademem_live", "fademem_live", player.root, {
    serialize: false, hideOnZoom: false, getMinHeight: () => PLAYER_HEIGHT, getHeight: () => PLAYER_HEIGHT,
  });
  widget.serialize = false; // nothing of it goes into the saved workflow
  widget.computeSize = (width) => [width, PLAYER_HEIGHT];
  node.__fadememLive = player;
  const min = node.computeSize();
  node.setSize?.([Math.max(node.size[0], 360), Math.max(node.size[1], min[1])]);
  app.graph?.setDirtyCanvas?.(true, true);
  return player;
}

app.registerExtension({
  name: "FadeMem.LivePlayback",
  setup() {
    api.addEventListener(EVENT, ({ detail }) => {
      const node = detail?.node != null && app.graph?.getNodeById?.(detail.node);
      if (!node || node.type !== NODE) return;
      playerOf(node).update(detail);
    });
  },
});
