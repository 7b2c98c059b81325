"""What the nodes ask of ComfyUI while they run: where outputs live between nodes, and
whether the user pressed Cancel."""

from __future__ import annotations

import torch


def intermediate_device() -> torch.device:
    """Where IMAGE and MASK outputs go between nodes (ComfyUI's intermediate device)."""
    try:
        import comfy.model_management as mm

        return mm.intermediate_device()
    except ImportError:  # pragma: no cover
        return torch.device("cpu")


def check_interrupt() -> None:
    """Raise ComfyUI's interruption if the user pressed Cancel (called between frames)."""
    import comfy.model_management as mm

    mm.throw_exception_if_processing_interrupted()
