"""Install SAM 2 (and SAM 3's tracker code) into this Python, leaving torch as it is.

ComfyUI-Manager and the Comfy registry's installer run this file with ComfyUI's Python
after they have installed requirements.txt; scripts/install.sh runs it the same way.
Plain `pip install sam2` would build SAM 2's source package in an isolated environment
that downloads a second torch, try to compile its CUDA extension, then install
torchvision, which can replace the user's torch build. Here each package is installed
with --no-deps, and sam2 is built against the torch already installed
(--no-build-isolation) with SAM2_BUILD_CUDA=0: a pure-Python result, nothing compiled,
nothing else changed. What is already installed at a suitable version is left alone,
so running this again does nothing.

SAM2LONG_SAM3=0 skips SAM 3's tracker code (the `sam3` package is under Meta's SAM
License; SAM 2 works without it).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys

TAG = "[SAM2Long]"
SAM2 = ("sam2", "1.1.0", None)  # distribution, lowest version, first version refused
# The tracker adapter (sam2long/models/sam3/) is written against sam3 0.1.4's modules.
SAM3 = [("sam3", "0.1.4", "0.2"), ("timm", "1.0.17", None), ("einops", "0.8", None)]
PINS = {"sam3": "sam3==0.1.4"}  # what to install where the lowest version is not enough


class InstallError(Exception):
    pass


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3])


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _suitable(dist: str, lowest: str, refused: str | None) -> str | None:
    """The installed version of `dist` if it is in [lowest, refused) and importable."""
    found = _installed(dist)
    if found is None or importlib.util.find_spec(dist) is None:
        return None
    if _numbers(found) < _numbers(lowest) or (refused and _numbers(found) >= _numbers(refused)):
        return None
    return found


def _requirement(dist: str, lowest: str, refused: str | None) -> str:
    return PINS.get(dist, f"{dist}>={lowest}" + (f",<{refused}" if refused else ""))


def _works(command: list[str]) -> bool:
    try:
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=60)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=1)
def installer() -> tuple[list[str], str]:
    """The install command for this Python (its pip, else uv, as the Manager chooses)
    and its option that ignores the cache."""
    python = [sys.executable] + (["-s"] if "python_embeded" in sys.executable else [])  # portable ComfyUI
    if _works(python + ["-m", "pip", "--version"]):
        return python + ["-m", "pip", "install", "--disable-pip-version-check"], "--no-cache-dir"
    # uv: --python, so that it installs here and not into an activated VIRTUAL_ENV
    if _works(python + ["-m", "uv", "--version"]):
        return python + ["-m", "uv", "pip", "install", "--python", sys.executable], "--no-cache"
    if shutil.which("uv"):
        return [shutil.which("uv"), "pip", "install", "--python", sys.executable], "--no-cache"
    raise InstallError(f"neither pip nor uv is available for {sys.executable}: install pip "
                       f"({sys.executable} -m ensurepip) and run this again")


def _run(command: list[str], env: dict | None = None) -> None:
    print(f"{TAG} running: {' '.join(command)}", flush=True)
    if subprocess.run(command, env=env).returncode != 0:
        raise InstallError(f"this failed (its output is above): {' '.join(command)}")


def _build_tools(install: list[str]) -> None:
    """sam2 is built here, with this Python's setuptools (no isolated build environment,
    which would download another torch); setuptools older than 70.1 also needs wheel."""
    setuptools = _installed("setuptools")
    if setuptools is None:
        _run(install + ["setuptools>=70.1"])
    elif _numbers(setuptools) < (70, 1) and _installed("wheel") is None:
        _run(install + ["wheel"])


def main() -> int:
    if _installed("torch") is None or importlib.util.find_spec("torch") is None:
        print(f"{TAG} PyTorch is not installed in {sys.executable}. Install the build for your platform "
              "first (https://pytorch.org/get-started/locally/), then run this again. Nothing was installed.")
        return 1
    print(f"{TAG} installing into {sys.prefix}; torch {_installed('torch')} is kept as it is", flush=True)
    try:
        found = _suitable(*SAM2)
        if found:
            print(f"{TAG} sam2 {found} is already installed")
        else:
            install, no_cache = installer()
            _build_tools(install)
            # Built afresh: a cached sam2 wheel may hold a CUDA extension built earlier for another torch.
            env = dict(os.environ, SAM2_BUILD_CUDA="0")
            _run(install + [no_cache, "--no-deps", "--no-build-isolation", _requirement(*SAM2)], env=env)
        check = subprocess.run([sys.executable, "-c", "import sam2"], capture_output=True, text=True)
        if check.returncode != 0:
            last = (check.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise InstallError(f"sam2 is installed but does not import ({last}); install the pack's "
                               f"requirements first: {sys.executable} -m pip install -r requirements.txt")
    except InstallError as e:
        print(f"{TAG} could not install SAM 2: {e}. By hand, with SAM2_BUILD_CUDA=0 set: "
              f"{sys.executable} -m pip install --no-deps --no-build-isolation \"{_requirement(*SAM2)}\"")
        return 1

    if os.environ.get("SAM2LONG_SAM3", "1") == "0":
        print(f"{TAG} SAM2LONG_SAM3=0: SAM 3's tracker code is not installed")
    else:
        missing = [_requirement(*want) for want in SAM3 if not _suitable(*want)]
        try:
            if missing:
                print(f"{TAG} SAM 3's tracker code (sam3: Meta's SAM License), without dependencies", flush=True)
                _run(installer()[0] + ["--no-deps"] + missing)
            else:
                print(f"{TAG} SAM 3's tracker code is already installed")
        except InstallError as e:
            print(f"{TAG} could not install SAM 3's tracker code: {e}. SAM 2 works; for SAM 3 checkpoints, "
                  f"by hand: {sys.executable} -m pip install --no-deps " + " ".join(f'"{m}"' for m in missing))
    print(f"{TAG} ready: sam2 {_installed('sam2')}, torch {_installed('torch')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
