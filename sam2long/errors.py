"""Errors a user can act on. Each message names the problem and the fix."""


class PromptError(ValueError):
    """A prompt is empty, outside the frame, on an unknown frame or of the wrong size."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of an unknown variant or has wrong tensors."""


class FrameError(ValueError):
    """Frames are missing, unreadable or of mismatched sizes."""


def first_line(e) -> str:
    """The first line of an exception's (or a library's error) message, for a one-line error."""
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]
