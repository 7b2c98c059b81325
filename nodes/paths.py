"""The `sam2` model folder: registration and the "where do I put it" message."""

from __future__ import annotations

import os

FOLDER = "sam2"
SUGGESTED = "sam2.1_hiera_large.pt (or any sam2/sam2.1_hiera_{tiny,small,base_plus,large} .pt or .safetensors)"


def register_model_folder() -> None:
    """Make `models/sam2` a model folder without clobbering a user's own entry.

    extra_model_paths.yaml is applied before custom nodes load, so a `sam2:` key
    may already exist: then only add the default folder to it (keeping its paths
    and extensions); otherwise create the entry with the .pt/.safetensors family.
    """
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER)
    if FOLDER in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(FOLDER, default)
    else:
        folder_paths.folder_names_and_paths[FOLDER] = ([default], set(folder_paths.supported_pt_extensions))


def model_folders() -> list[str]:
    import folder_paths

    try:
        return list(folder_paths.get_folder_paths(FOLDER))
    except KeyError:
        return [os.path.join(folder_paths.models_dir, FOLDER)]


def missing_checkpoint_message(name: str | None = None) -> str:
    folders = model_folders()
    where = "\n".join(f"  - {f}" + ("" if os.path.isdir(f) else "  (does not exist yet: create it)") for f in folders)
    head = (f"SAM2Long: the checkpoint {name!r} was not found." if name
            else "SAM2Long: no SAM 2 checkpoint found.")
    return (
        f"{head}\nPut {SUGGESTED} into one of these folders:\n{where}\n"
        "Official SAM 2.1 checkpoints: https://github.com/facebookresearch/sam2#model-description "
        "(safetensors copies: huggingface.co/Kijai/sam2-safetensors). Add more folders with a "
        "'sam2:' entry in extra_model_paths.yaml, then press R in ComfyUI to refresh the list."
    )


def checkpoint_choices() -> list[str]:
    import folder_paths

    try:
        return list(folder_paths.get_filename_list(FOLDER))
    except KeyError:
        return []


def full_path(name: str) -> str:
    """Absolute path of a checkpoint from the combo, or FileNotFoundError with the fix."""
    import folder_paths

    path = folder_paths.get_full_path(FOLDER, name) if name else None
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(missing_checkpoint_message(name))
    return path
