// node --test web/tests/   (Node's built-in runner; .mjs, so ComfyUI, which loads web/**/*.js, never loads it)
import assert from "node:assert/strict";
import { test } from "node:test";

import * as core from "../editor_core.js";

const stored = (state) => JSON.parse(core.serializeState(state));

test("a fresh state holds object 0 and no prompts, and reads back", () => {
  const s = core.emptyState();
  assert.deepEqual(stored(s), { version: 1, objects: [{ id: 0, name: "object 0", frames: {} }] });
  assert.deepEqual(core.parseState(core.serializeState(s)), s);
  assert.deepEqual(core.parseState(""), s);
});

test("edits build the JSON the node reads, frames in order, coordinates to 1/100 px", () => {
  let s = core.emptyState();
  s = core.addPoint(s, 0, 12, 10.123456, 20, 1);
  s = core.addPoint(s, 0, 12, 30, 40.5, 0);
  s = core.setBox(s, 0, 3, [50, 60, 5, 6]); // dragged up-left
  const { state, id } = core.addObject(s, "pillow");
  assert.equal(id, 1);
  s = core.addPoint(state, 1, 3, 1, 2, 1);
  assert.deepEqual(stored(s).objects, [
    { id: 0, name: "object 0", frames: { 3: { points: [], box: [5, 6, 50, 60] },
                                         12: { points: [[10.12, 20, 1], [30, 40.5, 0]], box: null } } },
    { id: 1, name: "pillow", frames: { 3: { points: [[1, 2, 1]], box: null } } },
  ]);
  assert.deepEqual(Object.keys(stored(s).objects[0].frames), ["3", "12"]);
  assert.deepEqual(core.promptedFrames(s), [3, 12]);
  assert.deepEqual(core.promptedFrames(s, 1), [3]);
  assert.deepEqual(core.framePrompts(s, 3).map((p) => p.id), [0, 1]);
  // a second box on the same object and frame replaces the first (SAM 2 takes one)
  assert.deepEqual(stored(core.setBox(s, 0, 3, [0, 0, 9, 9])).objects[0].frames[3].box, [0, 0, 9, 9]);
});

test("edits never change the state they were given", () => {
  const s = core.addPoint(core.emptyState(), 0, 0, 1, 1, 1);
  const before = core.serializeState(s);
  core.addPoint(s, 0, 0, 2, 2, 0);
  core.setBox(s, 0, 0, [0, 0, 4, 4]);
  core.clearFrame(s, 0);
  core.clearObject(s, 0);
  core.renameObject(s, 0, "x");
  core.deleteObject(s, 0);
  assert.equal(core.serializeState(s), before);
});

test("objects: ids never reused while held, rename, delete, clear object, clear frame", () => {
  let s = core.addObject(core.emptyState()).state; // ids 0, 1
  s = core.addObject(s).state; // 2
  s = core.deleteObject(s, 1);
  assert.equal(core.addObject(s).id, 3);
  s = core.renameObject(s, 2, "boy");
  assert.deepEqual(s.objects.map((o) => [o.id, o.name]), [[0, "object 0"], [2, "boy"]]);
  s = core.addPoint(core.addPoint(s, 0, 4, 1, 1, 1), 2, 4, 2, 2, 1);
  s = core.addPoint(s, 0, 7, 1, 1, 1);
  assert.deepEqual(core.promptedFrames(core.clearFrame(s, 4)), [7]);
  assert.deepEqual(core.promptedFrames(core.clearObject(s, 0)), [4]);
  assert.deepEqual(core.promptedFrames(core.clearObject(s, 0), 0), []);
});

test("undo steps back through the recorded states", () => {
  const h = new core.History(3);
  let s = core.emptyState();
  const states = [s];
  for (let i = 0; i < 4; i++) {
    h.record(s);
    s = core.addPoint(s, 0, 0, i, i, 1);
    states.push(s);
  }
  assert.equal(h.size, 3); // the oldest fell off
  assert.equal(h.undo(), states[3]);
  assert.equal(h.undo(), states[2]);
  assert.equal(h.undo(), states[1]);
  assert.equal(h.undo(), null);
});

test("parseState refuses what the node would refuse", () => {
  for (const bad of ["{", '{"version": 2, "objects": []}',
                     '{"version": 1, "objects": [{"id": -1, "frames": {}}]}',
                     '{"version": 1, "objects": [{"id": 0}, {"id": 0}]}',
                     '{"version": 1, "objects": [{"id": 0, "frames": {"x": {"points": []}}}]}',
                     '{"version": 1, "objects": [{"id": 0, "frames": {"0": {"points": [[1, 2, 5]]}}}]}',
                     '{"version": 1, "objects": [{"id": 0, "frames": {"0": {"points": [[1e999, 2, 1]]}}}]}',
                     '{"version": 1, "objects": [{"id": 0, "frames": {"0": {"box": [1, 2, 3]}}}]}']) {
    assert.throws(() => core.parseState(bad), Error, bad);
  }
});

test("canvas <-> source pixels at any aspect: the frame fitted whole and centred", () => {
  const wide = core.fitView(1920, 1080, 400, 400); // letterboxed top and bottom
  assert.equal(wide.scale, 400 / 1920);
  assert.deepEqual([wide.x, wide.y, wide.width, wide.height], [0, (400 - 225) / 2, 400, 225]);
  const tall = core.fitView(100, 400, 300, 200); // pillarboxed
  assert.deepEqual([tall.scale, tall.x, tall.y], [0.5, 125, 0]);
  for (const view of [wide, tall, core.fitView(192, 108, 333, 271), core.fitView(7, 5, 1000, 3)]) {
    for (const [x, y] of [[0, 0], [view.srcW, view.srcH], [view.srcW / 3, view.srcH / 7]]) {
      const [cx, cy] = core.toCanvas(view, x, y);
      const back = core.toSource(view, cx, cy);
      assert.ok(Math.abs(back[0] - x) < 1e-9 && Math.abs(back[1] - y) < 1e-9, JSON.stringify({ view, x, y }));
    }
  }
  assert.equal(core.toSource(wide, 200, 10), null); // on the letterbox
  assert.deepEqual(core.toSourceClamped(wide, -5, 500), [0, 1080]);
});

test("mouse positions at any zoom: CSS-scaled canvas rectangles", () => {
  const view = core.fitView(192, 108, 384, 216); // 2 canvas px per source px
  for (const zoom of [0.5, 1, 1.7]) {
    const rect = { left: 100, top: 50, width: 384 * zoom, height: 216 * zoom };
    const [cx, cy] = core.eventToCanvas(100 + 96 * zoom, 50 + 54 * zoom, rect, 384, 216);
    const [x, y] = core.toSource(view, cx, cy);
    assert.ok(Math.abs(x - 48) < 1e-9 && Math.abs(y - 27) < 1e-9, `zoom ${zoom}: ${x}, ${y}`);
  }
});

test("presses: point or box, positive or negative; colours from the palette by id", () => {
  assert.equal(core.pressKind([10, 10], [12, 11]), "point");
  assert.equal(core.pressKind([10, 10], [10, 14]), "box");
  assert.equal(core.clickLabel(0, false), 1);
  assert.equal(core.clickLabel(0, true), 0);
  assert.equal(core.clickLabel(2, false), 0);
  const palette = [[230, 25, 74], [61, 181, 74]];
  assert.equal(core.objectColour(palette, 3), "rgb(61, 181, 74)");
  assert.equal(core.objectColour(palette, 0, 0.5), "rgba(230, 25, 74, 0.5)");
  assert.equal(core.markPosition(0, 1), 0);
  assert.equal(core.markPosition(9, 10), 1);
});
