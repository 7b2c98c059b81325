"""Writes the example workflows (UI format, workflows/*.json) and their API-format
copies (tests/workflows_api/*.json) from one description per graph.

    python tests/workflows_api/build.py

The prompts use normalized coordinates so the same graphs run on the demo clip
(bedroom.mp4, 960x540) and on the small clip the server test makes from it.
"""

from __future__ import annotations

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# type -> (socket inputs [(name, type)], widget names, outputs [(name, type)])
NODE_TYPES = {
    "LoadVideo": ([], ["file", "upload"], [("VIDEO", "VIDEO")]),
    "GetVideoComponents": ([("video", "VIDEO")], [], [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")]),
    "ImageFromBatch": ([("image", "IMAGE")], ["batch_index", "length"], [("IMAGE", "IMAGE")]),
    "ImageBatch": ([("image1", "IMAGE"), ("image2", "IMAGE")], [], [("IMAGE", "IMAGE")]),
    "GrowMask": ([("mask", "MASK")], ["expand", "tapered_corners"], [("MASK", "MASK")]),
    "FeatherMask": ([("mask", "MASK")], ["left", "top", "right", "bottom"], [("MASK", "MASK")]),
    "MaskToImage": ([("mask", "MASK")], [], [("IMAGE", "IMAGE")]),
    "SaveImage": ([("images", "IMAGE")], ["filename_prefix"], []),
    "PreviewImage": ([("images", "IMAGE")], [], []),
    "SAM2LongModelLoader": ([], ["ckpt_name", "precision", "device"], [("model", "SAM2LONG_MODEL")]),
    "SAM2LongPrompt": ([("prompts", "SAM2LONG_PROMPTS"), ("bboxes", "BBOX,BOUNDING_BOX"), ("mask", "MASK")],
                       ["object_id", "frame_index", "positive_coords", "negative_coords", "coordinates"],
                       [("prompts", "SAM2LONG_PROMPTS")]),
    "SAM2LongPromptEditor": ([("prompts", "SAM2LONG_PROMPTS"), ("shot", "SAM2LONG_SHOT"), ("images", "IMAGE")],
                             ["editor"], [("prompts", "SAM2LONG_PROMPTS")]),
    # The frontend puts a combo's upload button after the node's other widgets (and saves its value).
    "SAM2LongLoadShot": ([], ["video", "path", "first_frame", "frame_count", "preview_index", "upload"],
                         [("shot", "SAM2LONG_SHOT"), ("frame_count", "INT"), ("width", "INT"), ("height", "INT"),
                          ("fps", "FLOAT"), ("frame", "IMAGE")]),
    "SAM2LongTrack": ([("model", "SAM2LONG_MODEL"), ("images", "IMAGE"), ("shot", "SAM2LONG_SHOT"),
                       ("video", "VIDEO"), ("prompts", "SAM2LONG_PROMPTS"), ("state", "SAM2LONG_STATE")],
                      ["pathways", "iou_threshold", "uncertainty", "direction", "start_frame", "end_frame",
                       "push_back"],
                      [("track", "SAM2LONG_TRACK"), ("masks", "MASK"), ("state", "SAM2LONG_STATE")]),
    "SAM2LongTrackToMask": ([("track", "SAM2LONG_TRACK")], ["object_ids", "mode", "first_frame", "frame_count",
                                                        "soft"],
                            [("masks", "MASK"), ("object_count", "INT"), ("frame_count", "INT")]),
    "SAM2LongPreview": ([("track", "SAM2LONG_TRACK"), ("images", "IMAGE"), ("shot", "SAM2LONG_SHOT")],
                        ["opacity", "object_ids", "show_ids", "preview_frames"], [("overlay", "IMAGE")]),
    "SAM2LongSaveMattes": ([("track", "SAM2LONG_TRACK")],
                           ["folder", "prefix", "object_ids", "mode", "first_number", "format", "soft",
                            "object_names"],
                           [("folder", "STRING")]),
}
OPTIONAL_SOCKETS = {("SAM2LongPromptEditor", "prompts"), ("SAM2LongPromptEditor", "shot"),
                    ("SAM2LongPromptEditor", "images"), ("SAM2LongPrompt", "prompts"), ("SAM2LongPrompt", "bboxes"), ("SAM2LongPrompt", "mask"),
                    ("SAM2LongTrack", "images"), ("SAM2LongTrack", "shot"), ("SAM2LongTrack", "video"),
                    ("SAM2LongTrack", "prompts"), ("SAM2LongTrack", "state"),
                    ("SAM2LongPreview", "images"), ("SAM2LongPreview", "shot")}
CKPT = "sam2.1_hiera_large.pt"
TRACK = {"pathways": 3, "iou_threshold": 0.3, "uncertainty": 2.0, "direction": "forward",
         "start_frame": 0, "end_frame": -1, "push_back": 0}
PREVIEW = {"opacity": 0.5, "object_ids": "", "show_ids": True, "preview_frames": 16}
TO_MASK = {"first_frame": 0, "frame_count": 0, "soft": False}

# Layout: nodes stand in columns, stacked in the order they are listed, below the Note. Heights
# are the frontend's (1.27) for each node type (title bar excluded); Load Video and Load Shot grow
# by a video preview, and image outputs get room for the images they show after a run.
WIDTH, NOTE_SIZE, GAP, TITLE = 320, (660, 200), 40, 30
HEIGHT = {"LoadVideo": 254, "SAM2LongLoadShot": 450, "GetVideoComponents": 66, "ImageFromBatch": 82,
          "GrowMask": 82, "FeatherMask": 130, "MaskToImage": 26, "SaveImage": 260, "PreviewImage": 260,
          "SAM2LongModelLoader": 106, "SAM2LongPrompt": 194, "SAM2LongTrack": 302, "SAM2LongTrackToMask": 194,
          "SAM2LongPreview": 260, "SAM2LongSaveMattes": 226, "SAM2LongPromptEditor": 520}


def pt(x, y):
    return json.dumps([{"x": x, "y": y}])


def N(id, type, col, title=None, **kw):
    return {"id": id, "type": type, "col": col, "title": title, "w": kw.pop("widgets", {}), "in": kw}


def video_in(first_id=1):
    return [N(first_id, "LoadVideo", 0, widgets={"file": "bedroom.mp4", "upload": "image"}),
            N(first_id + 1, "GetVideoComponents", 0, video=(first_id, 0)),
            model_loader(first_id + 2, 0)]


def model_loader(id, col):
    return N(id, "SAM2LongModelLoader", col, widgets={"ckpt_name": CKPT, "precision": "auto", "device": "auto"})


def load_shot(id, col, title=None, first_frame=0, frame_count=0, preview_index=0):
    """The shot opened without decoding it; only `preview_index` is decoded (output 5, frame)."""
    return N(id, "SAM2LongLoadShot", col, title, widgets={
        "video": "bedroom.mp4", "path": "", "first_frame": first_frame, "frame_count": frame_count,
        "preview_index": preview_index, "upload": "image"})


def save_mattes(id, col, track, folder, title=None):
    return N(id, "SAM2LongSaveMattes", col, title, track=track, widgets={
        "folder": folder, "prefix": "matte", "object_ids": "", "mode": "per_object", "first_number": -1,
        "format": "png", "soft": False, "object_names": ""})


def editor_state(objects):
    """The Prompt Editor's stored JSON (nodes/editor.py): {(id, name): {frame: [(x, y, label)]}}."""
    return json.dumps({"version": 1, "objects": [
        {"id": i, "name": name, "frames": {str(f): {"points": [list(p) for p in pts], "box": None}
                                            for f, pts in frames.items()}}
        for (i, name), frames in objects.items()]}, separators=(",", ":"))  # as the editor's JS writes it


# The roto loop's click on the girl in the demo clip (960x540), in source pixels.
ROTO_CLICK = (394, 227)


def prompt_w(obj, frame, pos, neg=""):
    return {"object_id": obj, "frame_index": frame, "positive_coords": pos, "negative_coords": neg,
            "coordinates": "normalized"}


GRAPHS = {
    "sam2long_points_to_masks": (
        "Click once on frame 0, track forward, grow/feather the masks, save them and a colour preview.",
        video_in() + [
            N(4, "SAM2LongPrompt", 1, widgets=prompt_w(0, 0, pt(0.41, 0.42))),
            N(5, "SAM2LongTrack", 2, model=(3, 0), images=(2, 0), prompts=(4, 0), widgets=TRACK),
            N(6, "GrowMask", 3, mask=(5, 1), widgets={"expand": 4, "tapered_corners": True}),
            N(7, "FeatherMask", 3, mask=(6, 0),
              widgets={"left": 6, "top": 6, "right": 6, "bottom": 6}),
            N(8, "MaskToImage", 3, mask=(7, 0)),
            N(9, "SaveImage", 4, images=(8, 0), widgets={"filename_prefix": "sam2long/mask"}),
            N(10, "SAM2LongPreview", 2, track=(5, 0), images=(2, 0), widgets=PREVIEW),
        ]),
    "sam2long_keyframe_bidirectional": (
        "Prompt a key frame in the middle of the shot and track forward and backward from it.",
        video_in() + [
            N(6, "SAM2LongPrompt", 1, widgets=prompt_w(0, 100, pt(0.21, 0.59))),
            N(4, "ImageFromBatch", 1, image=(2, 0),
              widgets={"batch_index": 100, "length": 1}),
            N(5, "PreviewImage", 1, title="Key frame (pick your click here)", images=(4, 0)),
            N(7, "SAM2LongTrack", 2, model=(3, 0), images=(2, 0), prompts=(6, 0),
              widgets=dict(TRACK, direction="both")),
            N(8, "MaskToImage", 3, mask=(7, 1)),
            N(9, "SaveImage", 4, images=(8, 0), widgets={"filename_prefix": "sam2long/keyframe"}),
            N(10, "SAM2LongPreview", 2, track=(7, 0), images=(2, 0), widgets=PREVIEW),
        ]),
    "sam2long_multi_object": (
        "Three objects (two children, one pillow) tracked together, with one mask output per object.",
        video_in() + [
            N(4, "SAM2LongPrompt", 1, title="object 0: girl", widgets=prompt_w(0, 0, pt(0.41, 0.42))),
            N(5, "SAM2LongPrompt", 1, title="object 1: boy", prompts=(4, 0),
              widgets=prompt_w(1, 0, pt(0.235, 0.48))),
            N(6, "SAM2LongPrompt", 1, title="object 2: pillow", prompts=(5, 0),
              widgets=prompt_w(2, 0, pt(0.625, 0.65))),
            N(7, "SAM2LongTrack", 2, model=(3, 0), images=(2, 0), prompts=(6, 0), widgets=TRACK),
            N(8, "SAM2LongTrackToMask", 3, title="girl", track=(7, 0),
              widgets=dict(TO_MASK, object_ids="0", mode="union")),
            N(9, "SAM2LongTrackToMask", 3, title="boy", track=(7, 0),
              widgets=dict(TO_MASK, object_ids="1", mode="union")),
            N(10, "SAM2LongTrackToMask", 3, title="all objects, one after another", track=(7, 0),
              widgets=dict(TO_MASK, object_ids="", mode="per_object")),
            N(11, "MaskToImage", 4, mask=(8, 0)),
            N(12, "SaveImage", 5, images=(11, 0), widgets={"filename_prefix": "sam2long/obj0"}),
            N(13, "MaskToImage", 4, mask=(9, 0)),
            N(14, "SaveImage", 5, images=(13, 0), widgets={"filename_prefix": "sam2long/obj1"}),
            N(15, "SAM2LongPreview", 2, track=(7, 0), images=(2, 0), widgets=PREVIEW),
        ]),
    "sam2long_long_shot_to_disk": (
        "A long shot from disk to disk in flat memory: Load Shot opens the video without decoding it (only the "
        "frame to click on is decoded), Track streams it one frame at a time and spills its masks to the temp "
        "folder, Save Mattes writes one numbered PNG per frame per object to output/sam2long/long_shot/<object>/. "
        "Use a path (e.g. plate.####.exr or a folder of frames) instead of the video combo for image sequences.",
        [
            load_shot(1, 0),
            N(2, "PreviewImage", 0, title="Frame to click on (preview_index)", images=(1, 5)),
            model_loader(3, 0),
            N(4, "SAM2LongPrompt", 1, widgets=prompt_w(0, 0, pt(0.41, 0.42))),
            N(5, "SAM2LongTrack", 2, model=(3, 0), shot=(1, 0), prompts=(4, 0), widgets=TRACK),
            save_mattes(6, 3, (5, 0), "sam2long/long_shot"),
            N(7, "SAM2LongPreview", 3, track=(5, 0), shot=(1, 0), widgets=PREVIEW),
        ]),
    "sam2long_roto_loop": (
        "The roto loop in one graph: click the object in the Prompt Editor's frame (left = on it, shift or "
        "right click = not on it, drag = box; the slider picks the frame), queue, scrub the masks drawn over "
        "the frames, click a correction where they drift, queue again. Mattes go to output/sam2long/roto/.",
        [
            load_shot(1, 0),
            model_loader(2, 0),
            N(3, "SAM2LongPromptEditor", 1, shot=(1, 0),
              widgets={"editor": editor_state({(0, "girl"): {0: [(*ROTO_CLICK, 1)]}})}),
            N(4, "SAM2LongTrack", 2, model=(2, 0), shot=(1, 0), prompts=(3, 0), widgets=TRACK),
            save_mattes(5, 3, (4, 0), "sam2long/roto"),
            N(6, "SAM2LongPreview", 3, track=(4, 0), shot=(1, 0), widgets=PREVIEW),
        ]),
    "sam2long_chunked_long_shot": (
        "A long shot in two ranges of 100 frames, each opened with Load Shot (first_frame, frame_count) and "
        "streamed; the second Track continues from the first's state, exactly as one run. Both Save Mattes "
        "write into one folder, numbered by the frame's position in the shot, so the sequence is continuous. "
        "Queue the first range, check it, then the second: the first is not re-tracked.",
        [
            load_shot(1, 0, "range 1: frames 0-99", frame_count=100),
            load_shot(2, 0, "range 2: frames 100-199", first_frame=100, frame_count=100),
            model_loader(3, 0),
            N(4, "SAM2LongPrompt", 1, widgets=prompt_w(0, 0, pt(0.41, 0.42))),
            N(5, "SAM2LongTrack", 2, title="Track range 1", model=(3, 0), shot=(1, 0), prompts=(4, 0),
              widgets=TRACK),
            N(6, "SAM2LongTrack", 2, title="Track range 2 (continues)", model=(3, 0), shot=(2, 0),
              state=(5, 2), widgets=TRACK),
            save_mattes(7, 3, (5, 0), "sam2long/chunked", "mattes of range 1"),
            save_mattes(8, 3, (6, 0), "sam2long/chunked", "mattes of range 2"),
        ]),
}


def _api(nodes):
    out = {}
    for n in sorted(nodes, key=lambda n: n["id"]):
        _, widgets, _ = NODE_TYPES[n["type"]]
        inputs = {k: v for k, v in n["w"].items() if k != "upload"}
        for name, link in n["in"].items():
            if link is not None:
                inputs[name] = [str(link[0]), link[1]]
        node = {"class_type": n["type"], "inputs": inputs}
        if n["title"]:
            node["_meta"] = {"title": n["title"]}
        out[str(n["id"])] = node
    return out


def _ui(nodes, description):
    links, ui_nodes = [], []
    by_id = {n["id"]: n for n in nodes}
    out_links = {}
    for n in nodes:
        sockets, _, _ = NODE_TYPES[n["type"]]
        for slot, (name, typ) in enumerate(sockets):
            link = n["in"].get(name)
            if link is None:
                continue
            src, src_slot = link
            lid = len(links) + 1
            links.append([lid, src, src_slot, n["id"], slot, NODE_TYPES[by_id[src]["type"]][2][src_slot][1]])
            out_links.setdefault((src, src_slot), []).append(lid)
    column_y = {}
    for order, n in enumerate(nodes):
        sockets, widget_names, outputs = NODE_TYPES[n["type"]]
        y = column_y.get(n["col"], NOTE_SIZE[1] + TITLE + GAP)
        column_y[n["col"]] = y + HEIGHT[n["type"]] + TITLE + GAP
        node = {
            "id": n["id"], "type": n["type"], "pos": [n["col"] * (WIDTH + GAP), y],
            "size": [WIDTH, HEIGHT[n["type"]]], "flags": {}, "order": order,
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "properties": {"Node name for S&R": n["type"]},
            "widgets_values": [n["w"][w] for w in widget_names if w in n["w"]],
        }
        if n["title"]:
            node["title"] = n["title"]
        for slot, (name, typ) in enumerate(sockets):
            link = n["in"].get(name)
            if link is None and (n["type"], name) not in OPTIONAL_SOCKETS:
                raise ValueError(f"{n['type']} {n['id']}: required input {name} is not connected")
            entry = {"name": name, "type": typ, "link": None if link is None else
                     next(lk[0] for lk in links if lk[3] == n["id"] and lk[4] == slot)}
            if (n["type"], name) in OPTIONAL_SOCKETS:
                entry["shape"] = 7  # drawn as an optional socket
            node["inputs"].append(entry)
        for slot, (name, typ) in enumerate(outputs):
            node["outputs"].append({"name": name, "type": typ, "links": out_links.get((n["id"], slot), []),
                                    "slot_index": slot})
        ui_nodes.append(node)
    ui_nodes.append({
        "id": max(n["id"] for n in nodes) + 1, "type": "Note", "pos": [0, TITLE], "size": list(NOTE_SIZE), "flags": {},
        "order": len(nodes), "mode": 0, "inputs": [], "outputs": [], "properties": {},
        "widgets_values": [description + "\n\nPut a SAM 2.1 checkpoint (e.g. sam2.1_hiera_large.pt) in "
                           "ComfyUI/models/sam2 and the clip in ComfyUI/input. " + (
                               "The editor stores its clicks in source pixels, in the workflow. See the README, "
                               "section Prompt Editor."
                               if any(n["type"] == "SAM2LongPromptEditor" for n in nodes) else
                               "Prompts use normalized coordinates (0..1); for pixel clicks wire KJNodes' Points "
                               "Editor into positive_coords and set coordinates to pixels. See the README, "
                               "section Nodes.")],
    })
    return {
        "last_node_id": max(n["id"] for n in ui_nodes), "last_link_id": len(links),
        "nodes": ui_nodes, "links": links, "groups": [], "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [40, 40]}}, "version": 0.4,
    }


def main():
    os.makedirs(os.path.join(REPO, "workflows"), exist_ok=True)
    for name, (description, nodes) in GRAPHS.items():
        with open(os.path.join(REPO, "workflows", name + ".json"), "w") as f:
            json.dump(_ui(nodes, description), f, indent=1)
            f.write("\n")
        with open(os.path.join(HERE, name + ".json"), "w") as f:
            json.dump(_api(nodes), f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
