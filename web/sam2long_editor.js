// The SAM2Long Prompt Editor's canvas in ComfyUI's frontend (an extension; ES module).
//
// The node's `editor` widget (hidden) stores the objects and prompts as JSON, so they live in
// the workflow; this file draws them on a frame and turns clicks into edits. Frames come from
// the pack's routes (nodes/routes.py): the shot that the upstream Load Shot's widgets name,
// before anything is queued, or the IMAGE batch the node got in the last run; after a Track
// run, that run's masks of the frame shown are drawn over it. The logic lives in
// editor_core.js (unit-tested); here it is only wired to the DOM.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import * as core from "./editor_core.js";

const NODE = "SAM2LongPromptEditor";
const DISPLAY_SIDE = 768; // frames are fetched scaled down to this many pixels a side
const POINT_RADIUS = 5;

let palette = []; // the overlay's colours by object id (sam2long/media/overlay.py), from the pack's route
api.fetchApi("/sam2long/palette").then((r) => r.json()).then((p) => {
  palette = p;
  for (const n of app.graph?._nodes ?? []) n.sam2longEditor?.refresh(); // editors made before it came
}).catch(() => {});

const linkOf = (graph, id) => (graph.links?.get ? graph.links.get(id) : graph.links?.[id]);

/** The node linked into `node`'s input `name`, or null. */
function upstream(node, name) {
  const input = node.inputs?.find((i) => i.name === name);
  const link = input?.link != null ? linkOf(node.graph, input.link) : null;
  return link ? node.graph.getNodeById(link.origin_id) : null;
}

/** Every node whose outputs reach `node` (through any chain of links). */
function ancestors(node) {
  const seen = new Set(), todo = [node];
  while (todo.length) {
    const n = todo.pop();
    for (const input of n.inputs ?? []) {
      const link = input.link != null ? linkOf(n.graph, input.link) : null;
      const from = link && n.graph.getNodeById(link.origin_id);
      if (from && !seen.has(from)) {
        seen.add(from);
        todo.push(from);
      }
    }
  }
  return seen;
}

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

class Editor {
  constructor(node) {
    this.node = node;
    this.widget = node.widgets.find((w) => w.name === "editor");
    this.widget.hidden = true; // the canvas is its face; the value still saves and queues
    this.widget.computeSize = () => [0, -4];
    this.state = core.emptyState();
    this.history = new core.History();
    this.selected = 0;
    this.frame = 0;
    this.count = 0;
    this.size = null; // source frame size {w, h}
    this.image = null;
    this.mask = null; // {frame, bitmap} of the last track
    this.trackId = null;
    this.imagesId = null;
    this.sourceKey = null;
    this.message = "";
    this.ticket = 0;
    this.press = null;
    this.build();
    this.load();
  }

  // ---- the stored state ----
  load() {
    try {
      this.state = core.parseState(this.widget.value);
      this.problem = "";
    } catch (e) {
      this.state = core.emptyState();
      this.problem = `the stored prompts cannot be read (${e.message}); an edit replaces them`;
    }
    if (!this.state.objects.some((o) => o.id === this.selected)) this.selected = this.state.objects[0]?.id ?? null;
    this.history = new core.History();
    this.refresh();
  }

  apply(next) {
    this.history.record(this.state);
    this.state = next;
    this.save();
  }

  save() {
    this.widget.value = core.serializeState(this.state);
    this.problem = "";
    this.node.setDirtyCanvas?.(true, true);
    this.refresh();
  }

  undo() {
    const previous = this.history.undo();
    if (!previous) return;
    this.state = previous;
    if (!this.state.objects.some((o) => o.id === this.selected)) this.selected = this.state.objects[0]?.id ?? null;
    this.save();
  }

  // ---- DOM ----
  build() {
    const button = (text, title, onclick) => el("button", { textContent: text, title, onclick, className: "sam2long-b" });
    this.objects = el("select", { title: "Object to click for", onchange: () => this.select(Number(this.objects.value)) });
    this.name = el("input", { type: "text", placeholder: "name", title: "Rename the object", size: 8 });
    this.name.addEventListener("change", () => this.selected !== null &&
      this.apply(core.renameObject(this.state, this.selected, this.name.value)));
    this.slider = el("input", { type: "range", min: 0, max: 0, value: 0, title: "Frame" });
    this.slider.addEventListener("input", () => this.setFrame(Number(this.slider.value)));
    this.number = el("input", { type: "number", min: 0, value: 0, title: "Frame (from the range's first)" });
    this.number.addEventListener("change", () => this.setFrame(Number(this.number.value)));
    this.total = el("span", { textContent: "/ 0" });
    this.canvas = el("canvas", { tabIndex: 0 });
    this.marks = el("canvas", { height: 6, title: "Frames with prompts" });
    this.status = el("div", { className: "sam2long-status" });
    const wrap = el("div", { className: "sam2long-view" }, this.canvas);
    this.root = el("div", { className: "sam2long-editor" },
      el("div", { className: "sam2long-row" }, this.objects,
        button("+", "Add an object", () => this.addObject()), this.name,
        button("Delete", "Delete the object and its prompts", () => this.deleteObject()),
        button("Undo", "Undo (Ctrl+Z)", () => this.undo()),
        button("Clear frame", "Remove every prompt on this frame", () => this.apply(core.clearFrame(this.state, this.frame))),
        button("Clear object", "Remove the object's prompts on every frame",
          () => this.selected !== null && this.apply(core.clearObject(this.state, this.selected)))),
      wrap,
      el("div", { className: "sam2long-row" },
        button("◀", "Previous frame (←)", () => this.setFrame(this.frame - 1)), this.slider,
        button("▶", "Next frame (→)", () => this.setFrame(this.frame + 1)), this.number, this.total),
      this.marks, this.status);
    new ResizeObserver(() => this.draw()).observe(wrap);
    this.canvas.addEventListener("pointerdown", (e) => this.down(e));
    this.canvas.addEventListener("pointermove", (e) => this.move(e));
    this.canvas.addEventListener("pointerup", (e) => this.up(e));
    this.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    this.canvas.addEventListener("keydown", (e) => this.key(e));
    this.dom = this.node.addDOMWidget("sam2long_canvas", "sam2long_editor", this.root,
      { serialize: false, hideOnZoom: false, getMinHeight: () => 320 });
    this.dom.serialize = false; // not a value: the state is in the `editor` widget
  }

  refresh() {
    const ids = this.state.objects.map((o) => o.id);
    this.objects.replaceChildren(...this.state.objects.map((o) =>
      el("option", { value: o.id, textContent: `${o.id}: ${o.name}`, style: `color: ${core.objectColour(palette, o.id)}` })));
    if (this.selected !== null && ids.includes(this.selected)) this.objects.value = String(this.selected);
    const current = this.state.objects.find((o) => o.id === this.selected);
    this.name.value = current?.name ?? "";
    this.objects.style.color = current ? core.objectColour(palette, current.id) : "";
    this.slider.max = Math.max(0, this.count - 1);
    this.slider.value = this.frame;
    this.number.max = Math.max(0, this.count - 1);
    this.number.value = this.frame;
    this.total.textContent = `/ ${Math.max(0, this.count - 1)}`;
    this.status.textContent = this.problem || this.message ||
      "click = on the object · shift/right click = not on it · drag = box · ←/→ frames · Ctrl+Z undo";
    this.draw();
  }

  select(id) {
    this.selected = id;
    this.refresh();
  }

  addObject() {
    const { state, id } = core.addObject(this.state);
    this.selected = id;
    this.apply(state);
  }

  deleteObject() {
    if (this.selected === null) return;
    const next = core.deleteObject(this.state, this.selected);
    this.selected = next.objects[0]?.id ?? null;
    this.apply(next);
  }

  // ---- frames ----
  source() {
    const images = this.node.inputs?.find((i) => i.name === "images");
    if (images?.link != null) {
      return this.imagesId ? { images: this.imagesId } : { message: "Queue the graph once to see the images here." };
    }
    const shot = upstream(this.node, "shot");
    if (shot?.type === "SAM2LongLoadShot") {
      const v = (name, d) => shot.widgets?.find((w) => w.name === name)?.value ?? d;
      return { video: v("video", ""), path: v("path", ""), first_frame: v("first_frame", 0), frame_count: v("frame_count", 0) };
    }
    return { message: "Connect SAM2Long Load Shot's shot (or an IMAGE batch) to click on its frames." };
  }

  /** Called on each redraw of the graph: fetches a frame when what the node shows changed. */
  check() {
    const key = JSON.stringify(this.source());
    if (key === this.sourceKey) return;
    if (this.sourceKey !== null) Object.assign(this, { trackId: null, mask: null }); // another shot's masks
    this.sourceKey = key;
    this.fetchFrame();
  }

  setFrame(f) {
    const last = Math.max(0, this.count - 1);
    const frame = Math.min(Math.max(0, Math.round(Number.isFinite(f) ? f : 0)), last);
    if (frame === this.frame && this.image) return this.refresh();
    this.frame = frame;
    this.refresh();
    this.fetchFrame();
  }

  async fetchFrame() {
    const query = this.source(), ticket = ++this.ticket;
    if (query.message) {
      Object.assign(this, { image: null, size: null, count: 0, message: query.message });
      return this.refresh();
    }
    const params = new URLSearchParams({ ...query, index: this.frame, max: DISPLAY_SIDE });
    try {
      const r = await api.fetchApi("/sam2long/frame?" + params);
      if (!r.ok) {
        const text = await r.text();
        if (ticket !== this.ticket) return;
        Object.assign(this, { image: null, size: null, message: text });
        return this.refresh();
      }
      const size = { w: Number(r.headers.get("X-SAM2Long-Width")), h: Number(r.headers.get("X-SAM2Long-Height")) };
      const count = Number(r.headers.get("X-SAM2Long-Frames"));
      const bitmap = await createImageBitmap(await r.blob());
      if (ticket !== this.ticket) return; // a later frame was asked for meanwhile
      Object.assign(this, { image: bitmap, imageFrame: this.frame, size, count, message: "" });
      if (this.frame > count - 1) return this.setFrame(count - 1);
      this.refresh();
      this.fetchMasks();
    } catch (e) {
      if (ticket === this.ticket) Object.assign(this, { image: null, message: `SAM2Long: no frame (${e})` });
      this.refresh();
    }
  }

  setTrack(id) {
    this.trackId = id;
    this.fetchMasks();
  }

  setImages(id) {
    if (id === this.imagesId) return;
    this.imagesId = id;
    this.check();
  }

  async fetchMasks() {
    const frame = this.frame, id = this.trackId;
    if (!id) return;
    const params = new URLSearchParams({ track: id, index: frame, max: DISPLAY_SIDE });
    try {
      const r = await api.fetchApi("/sam2long/masks?" + params);
      if (!r.ok) {
        if (r.status === 404 && id === this.trackId) this.trackId = null; // dropped from the server's cache
        this.mask = null;
        return this.draw();
      }
      const bitmap = await createImageBitmap(await r.blob());
      if (frame !== this.frame || id !== this.trackId) return; // scrubbed on meanwhile
      this.mask = { frame, bitmap, track: id };
    } catch (e) {
      this.mask = null;
    }
    this.draw();
  }

  // ---- drawing ----
  view() {
    return this.size && core.fitView(this.size.w, this.size.h, this.canvas.width, this.canvas.height);
  }

  draw() {
    const c = this.canvas, wrap = c.parentElement;
    if (!wrap) return;
    const w = Math.max(1, Math.round(wrap.clientWidth)), h = Math.max(1, Math.round(wrap.clientHeight));
    if (c.width !== w || c.height !== h) Object.assign(c, { width: w, height: h });
    const ctx = c.getContext("2d");
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, w, h);
    const view = this.view();
    if (!view || !this.image) {
      ctx.fillStyle = "#aaa";
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.fillText(this.image ? "" : (this.message ? "no frame (see below)" : "loading…"), w / 2, h / 2);
      return this.drawMarks();
    }
    ctx.drawImage(this.image, view.x, view.y, view.width, view.height);
    if (this.mask && this.mask.frame === this.frame) ctx.drawImage(this.mask.bitmap, view.x, view.y, view.width, view.height);
    for (const p of core.framePrompts(this.state, this.frame)) {
      const colour = core.objectColour(palette, p.id);
      ctx.lineWidth = p.id === this.selected ? 2 : 1;
      if (p.box) {
        const [x0, y0] = core.toCanvas(view, p.box[0], p.box[1]), [x1, y1] = core.toCanvas(view, p.box[2], p.box[3]);
        ctx.strokeStyle = colour;
        ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      }
      for (const [x, y, label] of p.points) {
        const [cx, cy] = core.toCanvas(view, x, y);
        ctx.beginPath();
        ctx.arc(cx, cy, POINT_RADIUS, 0, 2 * Math.PI);
        ctx.fillStyle = label ? colour : "#000";
        ctx.fill();
        ctx.strokeStyle = label ? "#fff" : colour;
        ctx.stroke();
        if (!label) {
          ctx.beginPath();
          ctx.moveTo(cx - 3, cy);
          ctx.lineTo(cx + 3, cy);
          ctx.stroke();
        }
      }
    }
    if (this.press?.to && core.pressKind(this.press.from, this.press.to) === "box") {
      const [x0, y0] = this.press.from, [x1, y1] = this.press.to;
      ctx.setLineDash([4, 3]);
      ctx.strokeStyle = core.objectColour(palette, this.selected ?? 0);
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      ctx.setLineDash([]);
    }
    this.drawMarks();
  }

  drawMarks() {
    const m = this.marks, w = Math.max(1, Math.round(m.parentElement?.clientWidth ?? 100));
    if (m.width !== w) m.width = w;
    const ctx = m.getContext("2d");
    ctx.clearRect(0, 0, m.width, m.height);
    if (this.count < 1) return;
    for (const o of this.state.objects) {
      ctx.fillStyle = core.objectColour(palette, o.id);
      for (const f of core.promptedFrames(this.state, o.id)) {
        ctx.fillRect(Math.round(core.markPosition(f, this.count) * (w - 3)), 0, 3, m.height);
      }
    }
  }

  // ---- input ----
  position(e) {
    return core.eventToCanvas(e.clientX, e.clientY, this.canvas.getBoundingClientRect(), this.canvas.width, this.canvas.height);
  }

  down(e) {
    e.preventDefault();
    e.stopPropagation();
    this.canvas.focus();
    if (!this.view() || this.selected === null) return;
    this.canvas.setPointerCapture?.(e.pointerId);
    this.press = { from: this.position(e), to: null, button: e.button, shift: e.shiftKey };
  }

  move(e) {
    if (!this.press) return;
    e.stopPropagation();
    this.press.to = this.position(e);
    this.draw();
  }

  up(e) {
    const press = this.press;
    this.press = null;
    if (!press) return;
    e.preventDefault();
    e.stopPropagation();
    const view = this.view(), to = this.position(e);
    if (core.pressKind(press.from, to) === "box") {
      const [x0, y0] = core.toSourceClamped(view, ...press.from), [x1, y1] = core.toSourceClamped(view, ...to);
      if (x0 !== x1 && y0 !== y1) this.apply(core.setBox(this.state, this.selected, this.frame, [x0, y0, x1, y1]));
      else this.draw();
      return;
    }
    const at = core.toSource(view, ...press.from);
    if (at) this.apply(core.addPoint(this.state, this.selected, this.frame, at[0], at[1], core.clickLabel(press.button, press.shift)));
  }

  key(e) {
    const step = { ArrowLeft: -1, ArrowRight: 1 }[e.key];
    if (step) this.setFrame(this.frame + step);
    else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") this.undo();
    else return;
    e.preventDefault();
    e.stopPropagation();
  }
}

const STYLE = `
.sam2long-editor { display: flex; flex-direction: column; gap: 3px; width: 100%; height: 100%; font: 11px sans-serif; color: #ccc; }
.sam2long-row { display: flex; flex-wrap: wrap; gap: 3px; align-items: center; }
.sam2long-row input[type=range] { flex: 1; min-width: 40px; }
.sam2long-row input[type=number] { width: 5em; }
.sam2long-row select { max-width: 9em; }
.sam2long-b { padding: 1px 5px; font-size: 11px; }
.sam2long-view { flex: 1; min-height: 60px; position: relative; overflow: hidden; }
.sam2long-view canvas { position: absolute; inset: 0; width: 100%; height: 100%; cursor: crosshair; outline: none; }
.sam2long-editor > canvas { width: 100%; height: 6px; }
.sam2long-status { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; opacity: 0.8; }
`;

app.registerExtension({
  name: "SAM2Long.PromptEditor",
  setup() {
    document.head.append(el("style", { textContent: STYLE }));
    api.addEventListener("executed", ({ detail }) => {
      const node = app.graph?.getNodeById(Number(detail?.node));
      if (!node) return;
      const images = detail.output?.sam2long_images?.[0];
      if (images && node.sam2longEditor) node.sam2longEditor.setImages(images);
      const track = detail.output?.sam2long_track?.[0];
      if (!track) return;
      for (const n of ancestors(node)) n.sam2longEditor?.setTrack(track); // the editors that fed this Track
    });
  },
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE) return;
    const created = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = created?.apply(this, arguments);
      this.sam2longEditor = new Editor(this);
      this.setSize([Math.max(this.size[0], 440), Math.max(this.size[1], 480)]);
      return r;
    };
    const configure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const r = configure?.apply(this, arguments);
      this.sam2longEditor?.load(); // the widget now holds the workflow's value
      return r;
    };
    const drawn = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function () {
      const r = drawn?.apply(this, arguments);
      this.sam2longEditor?.check();
      return r;
    };
  },
});
