"""ComfyUI nodes for SAM2Long (thin layer over the `sam2long` library)."""

from .editor import SAM2LongPromptEditor
from .loader import SAM2LongModelLoader
from .preview import SAM2LongPreview
from .prompts import SAM2LongPrompt
from .save import SAM2LongSaveMattes
from .shot import SAM2LongLoadShot
from .to_mask import SAM2LongTrackToMask
from .track import SAM2LongTrack

NODES = [SAM2LongModelLoader, SAM2LongLoadShot, SAM2LongPrompt, SAM2LongPromptEditor, SAM2LongTrack,
         SAM2LongTrackToMask, SAM2LongPreview, SAM2LongSaveMattes]

__all__ = ["NODES"] + [n.__name__ for n in NODES]
