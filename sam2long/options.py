"""The values the library's string options accept, in one place.

Kept free of heavy imports (no torch, no sam2) so the command line's parser and the
ComfyUI node definitions read them without loading the model code.
"""

DIRECTIONS = ("forward", "backward", "both")  # Tracker.propagate(direction=...)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # load_model(precision=...), compute precision on CUDA
