#!/usr/bin/env bash
# Install sam2long, its dependencies and the test runner into the current Python
# environment (an activated venv, or the Python named by $PYTHON - e.g. ComfyUI's).
#
# - PyTorch: an installed torch is kept. Install the build for your platform first
#   (https://pytorch.org/get-started/locally/). With no torch at all this installs
#   ${SAM2LONG_TORCH:-torch==2.13.0} from your pip index.
# - SAM 2 (PyPI `sam2`) is installed with --no-deps and without its optional CUDA
#   extension, so it does not pull torchvision (unused here) or a second torch.
# - SAM 3's tracker (optional, SAM License): sam3, timm and einops, also --no-deps
#   (SAM2LONG_SAM3=0 skips them).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if command -v python >/dev/null 2>&1; then PY=python; else PY=python3; fi
fi
pip_install() { "$PY" -m pip install --disable-pip-version-check "$@"; }

echo "== sam2long install into $("$PY" -c 'import sys; print(sys.prefix)')"
if "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "== keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
    echo "== no torch found: installing ${SAM2LONG_TORCH:-torch==2.13.0}"
    pip_install "${SAM2LONG_TORCH:-torch==2.13.0}"
fi

# Build tools, so that sam2's source package builds against the torch above
# instead of fetching another one into an isolated build environment.
pip_install "setuptools>=64" wheel
SAM2_BUILD_CUDA=0 pip_install --no-deps --no-build-isolation "sam2>=1.1.0"

# Everything else in requirements.txt (torch and sam2 are handled above), pytest, and
# Ray for the tests of `sam2long batch --engine ray` (the optional extra sam2long[ray];
# it pulls no torch or CUDA).
reqs="$(mktemp)"
trap 'rm -f "$reqs"' EXIT
grep -v -E '^[[:space:]]*(torch|sam2)([<>=!~ ;]|$)' requirements.txt > "$reqs"
extras=()
[ "${SAM2LONG_RAY:-1}" = 0 ] || extras+=("ray>=2.60")   # SAM2LONG_RAY=0 skips Ray
pip_install -r "$reqs" "pytest>=7" "${extras[@]}"

# SAM 3's tracker (optional; SAM2LONG_SAM3=0 skips it). The `sam3` package is under
# Meta's SAM License. Installed without dependencies: its declared ones (torchvision,
# triton, Hugging Face hub, a tokenizer) serve SAM 3's detector and would pull another
# torch; sam2long imports the tracker's modules without them (sam2long/sam3_family.py).
if [ "${SAM2LONG_SAM3:-1}" != 0 ]; then
    "$PY" -m pip show timm >/dev/null 2>&1 || pip_install --no-deps "timm>=1.0.17"
    pip_install --no-deps "sam3==0.1.4" "einops>=0.8"
fi

# sam2long itself, editable (the `sam2long` command comes with it).
pip_install --no-deps --no-build-isolation -e .
"$PY" -c "import sam2, sam2long, torch, OpenImageIO; print('== ready: sam2long', sam2long.__version__, '| torch', torch.__version__)"
