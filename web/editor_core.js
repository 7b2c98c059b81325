// The Prompt Editor's logic without the browser: the stored JSON, edits, undo, and the
// mapping between canvas pixels and source pixels. Everything here is a pure function of
// plain data (edits return a new state), so it is unit-tested with Node's test runner
// (web/tests/) and the canvas code (sam2long_editor.js) only draws and listens.
//
// The state is what the node's `editor` widget stores (read by nodes/editor.py):
//   {version: 1, objects: [{id, name, frames: {"<frame>": {points: [[x, y, label]], box}}}]}
// with x, y in source pixels, label 1 (positive) or 0 (negative), box [x0, y0, x1, y1] or null.

export const VERSION = 1;
export const DRAG_THRESHOLD = 4; // canvas pixels a press must move to draw a box instead of a point
const DIGITS = 100; // coordinates are stored to 1/100 pixel

export function emptyState() {
  return { version: VERSION, objects: [{ id: 0, name: "object 0", frames: {} }] };
}

const round = (v) => Math.round(v * DIGITS) / DIGITS;
const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

function checkPrompt(p, where) {
  if (typeof p !== "object" || p === null || Array.isArray(p)) throw new Error(`${where} is not {points, box}`);
  const points = p.points ?? [];
  if (!Array.isArray(points)) throw new Error(`the points of ${where} are not a list`);
  for (const q of points) {
    if (!Array.isArray(q) || q.length !== 3 || !isNumber(q[0]) || !isNumber(q[1]) || (q[2] !== 0 && q[2] !== 1)) {
      throw new Error(`a point of ${where} is not [x, y, 0|1]: ${JSON.stringify(q)}`);
    }
  }
  const box = p.box ?? null;
  if (box !== null && !(Array.isArray(box) && box.length === 4 && box.every(isNumber))) {
    throw new Error(`the box of ${where} is not [x0, y0, x1, y1]: ${JSON.stringify(box)}`);
  }
  return { points: points.map((q) => [q[0], q[1], q[2]]), box: box && [...box] };
}

/** The state stored in `text` (blank: a fresh one); throws an Error naming what is wrong. */
export function parseState(text) {
  if (typeof text !== "string" || !text.trim()) return emptyState();
  const data = JSON.parse(text);
  if (!data || data.version !== VERSION || !Array.isArray(data.objects)) {
    throw new Error(`not the editor's JSON (version ${VERSION} with objects)`);
  }
  const seen = new Set();
  const objects = data.objects.map((o) => {
    if (!o || !Number.isInteger(o.id) || o.id < 0) throw new Error(`bad object id ${JSON.stringify(o?.id)}`);
    if (seen.has(o.id)) throw new Error(`object id ${o.id} is used twice`);
    seen.add(o.id);
    const frames = {};
    for (const [key, p] of Object.entries(o.frames ?? {})) {
      if (!/^\d+$/.test(key)) throw new Error(`bad frame ${JSON.stringify(key)} of object ${o.id}`);
      frames[String(Number(key))] = checkPrompt(p, `object ${o.id} on frame ${key}`);
    }
    return { id: o.id, name: typeof o.name === "string" ? o.name : `object ${o.id}`, frames };
  });
  return { version: VERSION, objects };
}

/** The JSON the widget stores: frames in order, empty frames dropped, coordinates rounded. */
export function serializeState(state) {
  return JSON.stringify({
    version: VERSION,
    objects: state.objects.map((o) => {
      const frames = {};
      for (const key of Object.keys(o.frames).map(Number).sort((a, b) => a - b)) {
        const p = o.frames[key];
        if (!p.points.length && !p.box) continue;
        frames[key] = { points: p.points.map(([x, y, l]) => [round(x), round(y), l]), box: p.box && p.box.map(round) };
      }
      return { id: o.id, name: o.name, frames };
    }),
  });
}

// ---- edits: each returns a new state ---------------------------------------------------------

const withObject = (state, id, change) => ({
  ...state,
  objects: state.objects.map((o) => (o.id === id ? change(o) : o)),
});

function withPrompt(state, id, frame, change) {
  return withObject(state, id, (o) => {
    const key = String(frame);
    const p = change(o.frames[key] ?? { points: [], box: null });
    const frames = { ...o.frames, [key]: p };
    if (!p.points.length && !p.box) delete frames[key];
    return { ...o, frames };
  });
}

/** A new object with the next free id: {state, id}. */
export function addObject(state, name) {
  const id = state.objects.reduce((m, o) => Math.max(m, o.id + 1), 0);
  return { state: { ...state, objects: [...state.objects, { id, name: name || `object ${id}`, frames: {} }] }, id };
}

export const renameObject = (state, id, name) => withObject(state, id, (o) => ({ ...o, name: String(name) }));

export const deleteObject = (state, id) => ({ ...state, objects: state.objects.filter((o) => o.id !== id) });

export const addPoint = (state, id, frame, x, y, label) =>
  withPrompt(state, id, frame, (p) => ({ ...p, points: [...p.points, [x, y, label ? 1 : 0]] }));

/** The object's box on the frame (one per object and frame, as SAM 2 takes it), drawn either way round. */
export const setBox = (state, id, frame, [x0, y0, x1, y1]) =>
  withPrompt(state, id, frame, (p) => ({
    ...p, box: [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)],
  }));

export const clearFrame = (state, frame) => ({
  ...state,
  objects: state.objects.map((o) => {
    const frames = { ...o.frames };
    delete frames[String(frame)];
    return { ...o, frames };
  }),
});

export const clearObject = (state, id) => withObject(state, id, (o) => ({ ...o, frames: {} }));

/** Frames that carry a prompt (of one object, or of any), in order. */
export function promptedFrames(state, id = null) {
  const frames = new Set();
  for (const o of state.objects) {
    if (id !== null && o.id !== id) continue;
    for (const [key, p] of Object.entries(o.frames)) if (p.points.length || p.box) frames.add(Number(key));
  }
  return [...frames].sort((a, b) => a - b);
}

/** What each object has on a frame: [{id, points, box}]. */
export const framePrompts = (state, frame) =>
  state.objects.filter((o) => o.frames[String(frame)]).map((o) => ({ id: o.id, ...o.frames[String(frame)] }));

// ---- undo ------------------------------------------------------------------------------------

/** Past states (not stored in the workflow): record() before each edit, undo() steps back. */
export class History {
  constructor(limit = 200) {
    this.limit = limit;
    this.past = [];
  }
  record(state) {
    this.past.push(state);
    if (this.past.length > this.limit) this.past.shift();
  }
  undo() {
    return this.past.length ? this.past.pop() : null;
  }
  get size() {
    return this.past.length;
  }
}

// ---- canvas <-> source pixels ----------------------------------------------------------------

/** Where a srcW x srcH frame is drawn, fitted whole and centred into a boxW x boxH canvas:
 *  {scale (canvas pixels per source pixel), x, y (its top-left corner), width, height}. */
export function fitView(srcW, srcH, boxW, boxH) {
  const scale = Math.min(boxW / srcW, boxH / srcH);
  const width = srcW * scale, height = srcH * scale;
  return { scale, x: (boxW - width) / 2, y: (boxH - height) / 2, width, height, srcW, srcH };
}

/** A mouse position (clientX, clientY) as canvas pixels, whatever zoom or CSS scale the
 *  canvas is drawn at: `rect` is its getBoundingClientRect(), canvasW x canvasH its pixels. */
export const eventToCanvas = (clientX, clientY, rect, canvasW, canvasH) => [
  ((clientX - rect.left) * canvasW) / rect.width,
  ((clientY - rect.top) * canvasH) / rect.height,
];

/** Canvas pixels -> source pixels, or null off the frame. Source pixels run from the frame's
 *  top-left corner (0, 0) to (srcW, srcH), the same rule as the nodes'. */
export function toSource(view, cx, cy) {
  const x = (cx - view.x) / view.scale, y = (cy - view.y) / view.scale;
  if (x < 0 || y < 0 || x > view.srcW || y > view.srcH) return null;
  return [x, y];
}

/** Canvas pixels -> source pixels held on the frame (a box dragged past its edge). */
export function toSourceClamped(view, cx, cy) {
  const x = (cx - view.x) / view.scale, y = (cy - view.y) / view.scale;
  return [Math.min(Math.max(x, 0), view.srcW), Math.min(Math.max(y, 0), view.srcH)];
}

export const toCanvas = (view, x, y) => [view.x + x * view.scale, view.y + y * view.scale];

/** A press that ended `from` -> `to` (canvas pixels): "box" once it moved far enough, else "point". */
export const pressKind = (from, to, threshold = DRAG_THRESHOLD) =>
  Math.hypot(to[0] - from[0], to[1] - from[1]) >= threshold ? "box" : "point";

/** The label a click gives: 0 (negative) for the right button or with shift, else 1. */
export const clickLabel = (button, shiftKey) => (button === 2 || shiftKey ? 0 : 1);

/** An object's colour from the overlay palette ([[r, g, b], ...], by object id) as CSS. */
export function objectColour(palette, id, alpha = 1) {
  const [r, g, b] = palette.length ? palette[id % palette.length] : [255, 255, 255];
  return alpha === 1 ? `rgb(${r}, ${g}, ${b})` : `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

/** The slider position of a frame mark, 0..1. */
export const markPosition = (frame, count) => (count > 1 ? frame / (count - 1) : 0);
