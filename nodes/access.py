"""Which files the nodes may read and write: the one path policy of the pack.

Anyone who can queue a prompt on a shared ComfyUI server sets every widget value, so a
path in a node input is untrusted. The nodes read only under ComfyUI's input, output and
temp folders and write only under its output folder, plus the folders the server's owner
lists in SAM2LONG_ALLOWED_PATHS (separated by os.pathsep, e.g. a plate mount) for both.

The decision is made on the real path (symlinks resolved) with a common-path check, never
on the string, and before anything else touches the file system. `~` is not expanded.
A refused path gets one message that depends only on what was typed, so it tells nothing
about whether something exists outside. The command line and `sam2long batch` do not use
this: they run as the user, on the user's files.
"""

from __future__ import annotations

import os
from pathlib import Path

from sam2long.media.plates import is_sequence_path

ENV = "SAM2LONG_ALLOWED_PATHS"


class PathNotAllowed(PermissionError):
    """A node input names a path outside the folders the pack may use."""


def _extra_roots() -> list[str]:
    # The server owner's own setting: `~` is theirs, so it is expanded here (and only here).
    entries = os.environ.get(ENV, "").split(os.pathsep)
    return [os.path.realpath(os.path.expanduser(e.strip())) for e in entries if e.strip()]


def read_roots() -> list[str]:
    import folder_paths

    dirs = (folder_paths.get_input_directory(), folder_paths.get_output_directory(),
            folder_paths.get_temp_directory())
    return list(dict.fromkeys([*(os.path.realpath(d) for d in dirs), *_extra_roots()]))


def write_roots() -> list[str]:
    import folder_paths

    return list(dict.fromkeys([os.path.realpath(folder_paths.get_output_directory()), *_extra_roots()]))


def _inside(real: str, roots: list[str]) -> bool:
    for root in roots:
        try:
            common = os.path.commonpath([real, root])
        except ValueError:  # another drive (Windows)
            continue
        if os.path.normcase(common) == os.path.normcase(root):
            return True
    return False


def _no_nul(full: str, what: str) -> None:
    if "\0" in full:  # no file has one; the OS would raise ValueError
        raise PathNotAllowed(f"SAM2Long: {what} contains a NUL character; give a plain path")


def real_path(full: str, what: str = "the path") -> str:
    """`full` with every symlink resolved; for a sequence pattern (plate.####.exr), which is
    not a file (the frames are found in its folder), its folder is resolved and the pattern kept."""
    _no_nul(full, what)
    if is_sequence_path(Path(full)):
        return os.path.join(os.path.realpath(os.path.dirname(full)), os.path.basename(full))
    return os.path.realpath(full)


def refusal(what: str, roots: list[str], verb: str) -> str:
    listed = ", ".join(roots)
    return (f"SAM2Long: {what} is outside the folders this ComfyUI server lets SAM2Long {verb} ({listed}). "
            f"Give a path inside one of them, or have the server's owner add the folder to the environment "
            f"variable {ENV} (absolute folders separated by {os.pathsep!r}) and restart ComfyUI.")


def allowed(full: str) -> bool:
    """Whether the nodes may read `full` (for listings: no message)."""
    try:
        return _inside(real_path(full), read_roots())
    except PathNotAllowed:
        return False


def readable(full: str, what: str) -> str:
    """The real path of `full` if the nodes may read it, else PathNotAllowed. `what` (e.g.
    "the path '../x'") names the input as the user typed it, for the message."""
    real, roots = real_path(full, what), read_roots()
    if not _inside(real, roots):
        raise PathNotAllowed(refusal(what, roots, "read"))
    return real


def writable(full: str, what: str) -> str:
    """The real path of folder `full` if the nodes may write there, else PathNotAllowed.
    Nothing is created here: the caller makes the folder only after this check."""
    _no_nul(full, what)
    real, roots = os.path.realpath(full), write_roots()  # a folder, never a pattern: resolved whole
    if not _inside(real, roots):
        raise PathNotAllowed(refusal(what, roots, "write to"))
    return real
