"""Installing the pack as ComfyUI-Manager and the Comfy registry do leaves torch as it was.

Always run (seconds): requirements.txt and pyproject.toml's dependencies are in step and
list nothing that pulls torch; install.py refuses a Python without torch, changing nothing.

Opt-in, SAM2LONG_INSTALL_TESTS=1 (each makes fresh venvs and uses the package index;
a few minutes each):
- test_manager_install_keeps_torch[pip|uv]: a fresh venv with a torch
  ($SAM2LONG_INSTALL_TEST_TORCH, default torch==2.13.0) and PyPI's comfyui-manager 4.x;
  the Manager's own install routine (UnifiedManager.execute_install_script: each line of
  requirements.txt with its pip or uv, PIPFixer, then install.py) on a copy of the pack.
  torch's version and files are unchanged, no torchvision / torchaudio / triton / CUDA
  wheel appears, nothing is compiled (compiler stand-ins on PATH record any call; sam2 is
  the only package built, and pure Python), and sam2 + sam2long import and build a
  network. The uv mode's venv has no pip, as a uv-made ComfyUI venv.
- test_registry_metadata: PyPI comfy-cli's `comfy node validate` (offline) passes with no
  warning, and comfy-cli's own parser finds the registry fields filled in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPT_IN = os.environ.get("SAM2LONG_INSTALL_TESTS") == "1"
opt_in = pytest.mark.skipif(not OPT_IN, reason="set SAM2LONG_INSTALL_TESTS=1 (fresh venvs, package index, minutes)")
TORCH = os.environ.get("SAM2LONG_INSTALL_TEST_TORCH", "torch==2.13.0")
MANAGER = "comfyui-manager>=4.3,<5"
# Packages that would mean the install reached for another torch or for SAM's extras.
FORBIDDEN = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")


def _requirement_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


def test_requirements_pull_no_torch_and_match_pyproject():
    tomllib = pytest.importorskip("tomllib")
    lines = _requirement_lines((REPO / "requirements.txt").read_text())
    names = {_name(line) for line in lines}
    # The Manager installs every line with its dependencies: none of these may be there.
    assert not names & {"torch", "torchvision", "torchaudio", "sam2", "sam3", "timm"}, names
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # `pip install .`: the same list plus torch (an installed torch >= 2.3 is kept).
    assert sorted(project["dependencies"]) == sorted(lines + ["torch>=2.3"])
    for extra, requirements in project.get("optional-dependencies", {}).items():
        assert not {_name(r) for r in requirements} & {"sam2", "sam3", "timm", "torchvision"}, extra


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(extra)
    return env


def test_install_py_without_torch_changes_nothing(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    before = sorted(p.name for p in (venv / "lib").glob("python*/site-packages/*"))
    run = subprocess.run([str(venv / "bin" / "python"), "install.py"], cwd=REPO, capture_output=True, text=True,
                         env=_clean_env(), timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "PyTorch is not installed" in run.stdout and "Nothing was installed" in run.stdout, run.stdout
    assert sorted(p.name for p in (venv / "lib").glob("python*/site-packages/*")) == before


# --- opt-in: real installs -------------------------------------------------------------

# torch's version, a hash of its installed files (RECORD's list, without bytecode that an
# import may add) and every distribution's version, read inside the venv.
SNAPSHOT = r"""
import hashlib, importlib.metadata as md, json
torch = md.distribution("torch")
h = hashlib.sha256()
files = sorted(str(f) for f in torch.files if f.suffix != ".pyc")
for name in files:
    h.update(name.encode() + b"\0")
    with open(torch.locate_file(name), "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
print(json.dumps({"torch": torch.version, "sha256": h.hexdigest(), "files": len(files),
                  "dists": {d.metadata["Name"].lower().replace("_", "-"): d.version for d in md.distributions()}}))
"""

# ComfyUI-Manager's install routine, as its server calls it for a pack it has fetched.
DRIVER = r"""
import sys, types
mode, pack = sys.argv[1], sys.argv[2]
# The Manager package's __init__ imports ComfyUI's argument parser, which the install
# routine never reads: a module with an empty `args` stands in for it.
cli_args = types.ModuleType("comfy.cli_args")
cli_args.args = types.SimpleNamespace()
sys.modules.update({"comfy": types.ModuleType("comfy"), "comfy.cli_args": cli_args})
from comfyui_manager.common import cm_global, context
from comfyui_manager.glob import manager_core
# The user's choice of pip or uv, in the Manager's config file (without one it takes uv
# where uv is installed, and uv comes with the Manager).
with open(context.manager_config_path, "w") as f:
    f.write(f"[default]\nuse_uv = {mode == 'uv'}\n")
# As the Manager's prestartup script sets them.
cm_global.pip_blacklist = {"torch", "torchaudio", "torchsde", "torchvision"}
cm_global.pip_downgrade_blacklist = ["torch", "torchaudio", "torchsde", "torchvision", "transformers",
                                     "safetensors", "kornia"]
cm_global.pip_overrides = {}
manager_core.get_config()
assert manager_core.manager_util.use_uv == (mode == "uv")
ok = manager_core.unified_manager.execute_install_script(None, pack, instant_execution=True)
sys.exit(0 if ok else 1)
"""

# What ComfyUI needs of the pack's library, run from the pack's folder (ComfyUI puts it
# on sys.path the same way): SAM 2's configs through hydra, a network, SAM 3's tracker.
USE = r"""
import os, sys, torch, sam2, sam2long
from sam2long.models.model import build_net
from sam2long.models.sam3 import shims as sam3_shims
net = build_net("sam2.1_hiera_tiny", image_size=64)
with torch.no_grad():
    out = net.image_encoder(torch.zeros(1, 3, 64, 64))
sam3_shims.sam3_modules()
print("USE-OK", sam2.__file__, sam2long.__file__, tuple(out["vision_features"].shape))
"""

# A distribution's WHEEL file and the files it installed.
PURE = r"""
import importlib.metadata as md, json, sys
d = md.distribution(sys.argv[1])
print(json.dumps([d.read_text("WHEEL"), [str(f) for f in d.files]]))
"""

COMPILERS = ("cc", "gcc", "c++", "g++", "clang", "clang++", "nvcc", "hipcc", "ld")


def _pack_copy(dest: Path) -> Path:
    """The pack's files as a clone or the registry's zip holds them (tracked and new ones)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _compiler_stand_ins(root: Path) -> tuple[Path, Path]:
    """A bin folder of compilers that only record their call (and fail), and the record."""
    record = root / "compiler-calls.log"
    (root / "bin").mkdir(parents=True)
    for name in COMPILERS:
        tool = root / "bin" / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{record}"\nexit 1\n')
        tool.chmod(0o755)
    return root / "bin", record


def _run(command, **kw) -> subprocess.CompletedProcess:
    run = subprocess.run(command, capture_output=True, text=True, **kw)
    assert run.returncode == 0, f"{command} failed:\n{run.stdout[-6000:]}\n{run.stderr[-6000:]}"
    return run


def _venv(path: Path, *packages: str) -> Path:
    _run([sys.executable, "-m", "venv", str(path)])
    python = path / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *packages],
         env=_clean_env(), timeout=1200)
    return python


def _snapshot(python: Path) -> dict:
    return json.loads(_run([str(python), "-c", SNAPSHOT], env=_clean_env(), timeout=300).stdout)


def _built_from_source(log: str) -> set[str]:
    """Packages that pip ("Building wheel for X") or uv ("Built X==1.0") built here."""
    names = re.findall(r"Building wheel for (\S+) \(", log) + re.findall(r"Built (\S+?)==", log)
    return {n.lower() for n in names}


@opt_in
@pytest.mark.parametrize("mode", ["pip", "uv"])
def test_manager_install_keeps_torch(tmp_path, mode):
    python = _venv(tmp_path / "venv", TORCH, MANAGER, "aiohttp")  # aiohttp: ComfyUI's, imported by the Manager
    if mode == "uv":  # a venv made by uv has no pip: the Manager and install.py use uv
        _run([str(python), "-m", "pip", "uninstall", "-y", "-q", "pip"], env=_clean_env())
    before = _snapshot(python)
    assert "sam2" not in before["dists"] and "torchvision" not in before["dists"]

    comfy = tmp_path / "ComfyUI"  # the Manager reads COMFYUI_PATH (its requirements.txt: none here)
    comfy.mkdir()
    (comfy / "requirements.txt").write_text("")
    pack = _pack_copy(comfy / "custom_nodes" / "ComfyUI-SAM2Long")
    stand_ins, record = _compiler_stand_ins(tmp_path / "compilers")
    # SAM2_BUILD_ALLOW_ERRORS=0: an attempt at SAM 2's CUDA extension fails the install
    # (with a CPU torch it would fail quietly; with a CUDA torch it would compile).
    env = _clean_env(VIRTUAL_ENV=str(tmp_path / "venv"), COMFYUI_PATH=str(comfy), SAM2_BUILD_ALLOW_ERRORS="0",
                     PATH=f"{stand_ins}{os.pathsep}{python.parent}{os.pathsep}{os.environ['PATH']}",
                     CC=str(stand_ins / "cc"), CXX=str(stand_ins / "c++"), CUDA_HOME=str(stand_ins.parent))
    (tmp_path / "driver.py").write_text(DRIVER)

    # Offline first: install.py fails with the command to run by hand, and installs nothing.
    offline = dict(env, PIP_NO_INDEX="1", UV_OFFLINE="1")
    failed = subprocess.run([str(python), "install.py"], cwd=pack, env=offline, capture_output=True, text=True)
    assert failed.returncode == 1 and "could not install SAM 2" in failed.stdout, failed.stdout + failed.stderr
    assert "--no-deps --no-build-isolation" in failed.stdout, failed.stdout
    assert "sam2" not in _snapshot(python)["dists"]

    t0 = time.monotonic()
    run = _run([str(python), str(tmp_path / "driver.py"), mode, str(pack)], cwd=pack, env=env, timeout=1800)
    seconds = time.monotonic() - t0
    log = run.stdout + run.stderr
    after = _snapshot(python)
    added = sorted(set(after["dists"]) - set(before["dists"]))
    changed = sorted(n for n in before["dists"] if after["dists"].get(n) != before["dists"][n])
    report = {"mode": mode, "seconds": round(seconds, 1), "torch": [before["torch"], after["torch"]],
              "sha256": [before["sha256"][:16], after["sha256"][:16]], "torch_files": after["files"],
              "added": added, "changed": changed}
    print(f"\nINSTALL-REPORT {json.dumps(report)}")

    assert "Install: install script" in log and "[SAM2Long] ready: sam2 1.1.0" in log, log[-4000:]
    # The Manager's pip commands and install.py's were of the mode chosen.
    assert ("'-m', 'uv', 'pip', 'install'" in log) == (mode == "uv"), log[-4000:]
    installer = re.search(r"\[SAM2Long\] running: \S+ -m (uv pip|pip) install", log).group(1)
    assert installer == ("uv pip" if mode == "uv" else "pip"), installer
    assert (after["torch"], after["sha256"], after["files"]) == (before["torch"], before["sha256"], before["files"])
    assert not [n for n in added + changed if FORBIDDEN.match(n)], (added, changed)
    assert {"sam2", "sam3", "timm", "einops", "hydra-core", "openimageio"} <= set(added), added
    # Nothing compiled: no compiler was called, and what was built from a source package
    # (sam2; iopath has no wheel either) is pure Python.
    assert not record.exists(), record.read_text()
    built = _built_from_source(log)
    assert "sam2" in built, log[-4000:]
    for name in built:
        wheel, files = json.loads(_run([str(python), "-c", PURE, name], env=env).stdout)
        assert "Root-Is-Purelib: true" in wheel and "py3-none-any" in wheel, (name, wheel)
        assert not [f for f in files if f.endswith((".so", ".pyd", ".dylib"))], name

    use = _run([str(python), "-c", USE], cwd=pack, env=env, timeout=600).stdout
    assert "USE-OK" in use and str(tmp_path / "venv") in use and str(pack / "sam2long") in use, use

    # The Manager runs install.py again on an update or a fix: then it installs nothing.
    again = _run([str(python), "install.py"], cwd=pack, env=env, timeout=300).stdout
    assert "sam2 1.1.0 is already installed" in again and "running:" not in again, again
    assert _snapshot(python) == after


@opt_in
def test_registry_metadata(tmp_path):
    python = _venv(tmp_path / "venv", "comfy-cli")
    pack = _pack_copy(tmp_path / "ComfyUI-SAM2Long")
    env = _clean_env(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    comfy = python.parent / "comfy"
    run = _run([str(comfy), "--skip-prompt", "--no-enable-telemetry", "node", "validate"], cwd=pack, env=env,
               timeout=300)
    out = run.stdout + run.stderr
    assert "All validation checks passed" in out and not re.search(r"warning|error", out, re.I), out

    # The fields the registry publishes, as comfy-cli's parser reads them.
    parsed = _run([str(python), "-c", "import dataclasses, json; from comfy_cli.registry.config_parser import "
                   "extract_node_configuration as x; print(json.dumps(dataclasses.asdict(x('pyproject.toml'))))"],
                  cwd=pack, env=env).stdout
    config = json.loads(parsed.strip().splitlines()[-1])
    project, comfy_fields = config["project"], config["tool_comfy"]
    assert project["name"] and project["description"] and re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["license"]["file"] == "LICENSE" and "Apache License" in (pack / "LICENSE").read_text()
    repository = project["urls"]["repository"]
    assert repository.startswith("https://github.com/"), repository
    assert project["supported_comfyui_version"] == ">=0.3.64"
    assert comfy_fields["publisher_id"] and comfy_fields["display_name"]
    # The icon URL is the repository's own icon.png on its main branch: a square PNG of at most 400 px.
    owner_repo = repository.removeprefix("https://github.com/")
    assert comfy_fields["icon"] == f"https://raw.githubusercontent.com/{owner_repo}/main/icon.png"
    head = (pack / "icon.png").read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert width == height <= 400, (width, height)
