"""Files complete or absent: a temporary file beside the final one, renamed into place.

The temporary file is made by `mkstemp` (a random name, created exclusively) and written
through its descriptor, so a link planted in the folder is never written through; the
rename replaces a link at the final name instead of following it.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path


@functools.cache
def _umask() -> int:
    umask = os.umask(0o077)  # read it by setting a stricter one for an instant
    os.umask(umask)
    return umask


def ordinary_mode(base: int = 0o666) -> int:
    """The mode an ordinary open (0o666) or mkdir (0o777) gives a new file or folder;
    mkstemp's and mkdtemp's own are owner-only."""
    return base & ~_umask()


def open_temp(final: Path) -> tuple[int, Path]:
    """(descriptor, path) of a new, empty, hidden temporary file for `final`, in its folder."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, ordinary_mode())
    return fd, Path(name)


def name_of_open(fd: int, tmp: Path) -> str:
    """A file name for our open temporary file, for a library that only opens names
    (OpenImageIO). On Linux /proc/self/fd/N reaches that very file whatever is renamed in
    the folder meanwhile; elsewhere its path, once checked to still be our file."""
    proc = f"/proc/self/fd/{fd}"
    if os.path.exists(proc):
        return proc
    if not os.path.samestat(os.fstat(fd), os.lstat(tmp)):
        raise OSError(f"the temporary file {str(tmp)!r} was replaced while being written: "
                      f"someone else is writing in {str(tmp.parent)!r}")
    return str(tmp)


def write_text_file(final: Path, text: str) -> None:
    """`text` into `final` as UTF-8, through a temporary file (complete or absent, never
    written through a link)."""
    fd, tmp = open_temp(final)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
