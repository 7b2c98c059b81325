"""The model folders (`sam2`, `sam3`, and core ComfyUI's `checkpoints` for SAM 3):
registration, the loader's list (with the catalogue's files to download), and the
"where do I put it" message."""

from __future__ import annotations

import os
import re

from sam2long.models.catalog import SAM2_DOWNLOADS, download_url

FOLDER = "sam2"
SAM3_FOLDER = "sam3"
FOLDERS = (FOLDER, SAM3_FOLDER)
# Core ComfyUI's SAM 3 nodes take their model from CheckpointLoaderSimple, i.e. from
# models/checkpoints; SAM 3 files there are listed too, so a user reuses that file.
CORE_FOLDER = "checkpoints"
# a SAM 3 file name in models/checkpoints; SAM 3.1 (sam3.1_multiplex_*) is another tracker
_CORE_SAM3 = re.compile(r"sam[-_]?3(?![._-]?p?1)", re.IGNORECASE)
# The loader lists each catalogue file that is not in a model folder as "<name> (download)";
# choosing it downloads the file into the first sam2 folder on first use. A workflow saved
# with that entry keeps working once the file is there (the entry then finds the file).
DOWNLOAD_MARK = " (download)"
SUGGESTED = (
    "sam2.1_hiera_large.pt (or any sam2/sam2.1_hiera_{tiny,small,base_plus,large} .pt or .safetensors) "
    "into a sam2 folder, or SAM 3's sam3.pt into a sam3 folder"
)


def register_model_folder() -> None:
    """Make `models/sam2` and `models/sam3` model folders without clobbering a user's
    own entries.

    extra_model_paths.yaml is applied before custom nodes load, so a `sam2:` or `sam3:`
    key may already exist: then only add the default folder to it (keeping its paths
    and extensions); otherwise create the entry with the .pt/.safetensors family.
    """
    import folder_paths

    for name in FOLDERS:
        default = os.path.join(folder_paths.models_dir, name)
        if name in folder_paths.folder_names_and_paths:
            folder_paths.add_model_folder_path(name, default)
        else:
            folder_paths.folder_names_and_paths[name] = ([default], set(folder_paths.supported_pt_extensions))


def _folders(name: str) -> list[str]:
    import folder_paths

    try:
        return list(folder_paths.get_folder_paths(name))
    except KeyError:
        return [os.path.join(folder_paths.models_dir, name)]


def model_folders() -> list[str]:
    return [f for name in FOLDERS for f in _folders(name)]


def download_folder() -> str:
    """Where a chosen catalogue file is downloaded to: the first sam2 folder."""
    return _folders(FOLDER)[0]


def to_download(choice: str | None) -> str | None:
    """The catalogue file a "<name> (download)" entry stands for, or None."""
    if choice and choice.endswith(DOWNLOAD_MARK):
        name = choice[: -len(DOWNLOAD_MARK)]
        if name in SAM2_DOWNLOADS:
            return name
    return None


def missing_checkpoint_message(name: str | None = None) -> str:
    folders = model_folders()
    where = "\n".join(f"  - {f}" + ("" if os.path.isdir(f) else "  (does not exist yet: create it)") for f in folders)
    head = (f"SAM2Long: the checkpoint {name!r} was not found." if name
            else "SAM2Long: no SAM 2 or SAM 3 checkpoint found.")
    if name in SAM2_DOWNLOADS:
        head += (f" Choose {name + DOWNLOAD_MARK!r} in the list to download it ({download_url(name)}) "
                 f"into {download_folder()}, or put it there by hand.")
    return (
        f"{head}\nPut {SUGGESTED}:\n{where}\n"
        "Official SAM 2.1 checkpoints: https://github.com/facebookresearch/sam2#model-description "
        "(safetensors copies: huggingface.co/Kijai/sam2-safetensors). SAM 3: huggingface.co/facebook/sam3 "
        "is gated: accept the SAM License there, then download sam3.pt. A SAM 3 file in models/checkpoints "
        "(where core ComfyUI's SAM 3 nodes read it) is listed too. Add more folders with a 'sam2:' or "
        "'sam3:' entry in extra_model_paths.yaml, then press R in ComfyUI to refresh the list."
    )


def _listing(name: str) -> list[str]:
    import folder_paths

    try:
        return list(folder_paths.get_filename_list(name))
    except KeyError:
        return []


def _core_sam3(files: list[str]) -> list[str]:
    return [f for f in files if _CORE_SAM3.search(os.path.basename(f))]


def checkpoint_choices() -> list[str]:
    """models/sam2, then models/sam3, then SAM 3 files in models/checkpoints (a name
    in several folders is listed once: the first folder's file is loaded), then the
    catalogue's SAM 2 / 2.1 files that are in none of them, marked to be downloaded."""
    names = list(dict.fromkeys([*_listing(FOLDER), *_listing(SAM3_FOLDER), *_core_sam3(_listing(CORE_FOLDER))]))
    present = set(names)
    return names + [name + DOWNLOAD_MARK for name in SAM2_DOWNLOADS if name not in present]


def find(name: str) -> str | None:
    """The file a combo entry stands for, searched as `checkpoint_choices` lists it
    ("<name> (download)" finds <name> once it has been downloaded)."""
    import folder_paths

    name = to_download(name) or name
    # ComfyUI's list never holds an absolute name or "..": with the list check off
    # (validate_inputs), such a name must not reach a file outside the model folders.
    if not name or os.path.isabs(name) or ".." in re.split(r"[\\/]", name):
        return None
    for folder in (*FOLDERS, *([CORE_FOLDER] if _core_sam3([name]) else [])):
        path = folder_paths.get_full_path(folder, name)  # None where the folder is not registered
        if path and os.path.isfile(path):
            return path
    return None


def full_path(name: str) -> str:
    """Absolute path of a checkpoint from the combo, or FileNotFoundError with the fix."""
    path = find(name)
    if path is None:
        raise FileNotFoundError(missing_checkpoint_message(name))
    return path
