"""Socket types shared by the SAM2Long nodes.

The io_type strings are the contract between nodes (and between packs): keep
them stable. BBOX and BOUNDING_BOX are the box types other packs already emit.
"""

from comfy_api.latest import io

ModelType = io.Custom("SAM2LONG_MODEL")
PromptsType = io.Custom("SAM2LONG_PROMPTS")
TrackType = io.Custom("SAM2LONG_TRACK")
StateType = io.Custom("SAM2LONG_STATE")
# A lazy handle on a frame range of a shot on disk (sam2long.media.shot.Shot): no pixels.
ShotType = io.Custom("SAM2LONG_SHOT")

# KJNodes / kijai SAM2: list of (x0, y0, x1, y1); core (2026): {"x","y","width","height"} dicts.
BBox = io.Custom("BBOX")
BoundingBox = io.Custom("BOUNDING_BOX")

CATEGORY = "SAM2Long"
