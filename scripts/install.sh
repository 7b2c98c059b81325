#!/usr/bin/env bash
# Install sam2long, its dependencies and the test runner into the current Python
# environment (an activated venv, or the Python named by $PYTHON - e.g. ComfyUI's).
#
# - PyTorch: an installed torch is kept. Install the build for your platform first
#   (https://pytorch.org/get-started/locally/). With no torch at all this installs
#   ${SAM2LONG_TORCH:-torch==2.13.0} from your pip index.
# - requirements.txt (only dependencies that pull no torch), pytest and Ray, and the
#   test-only Cryptomatte decoders.
# - install.py, what ComfyUI-Manager runs too: SAM 2 (PyPI `sam2`) with --no-deps and
#   without its optional CUDA extension, so it does not pull torchvision (unused here)
#   or a second torch; SAM 3's tracker code (optional, SAM License: sam3, timm, einops),
#   also --no-deps (SAM2LONG_SAM3=0 skips it).
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

# requirements.txt pulls no torch (it never lists torch, torchvision, sam2 or sam3),
# plus pytest and Ray for the tests of `sam2long batch --engine ray` (the optional
# extra sam2long[ray]; it pulls no torch or CUDA).
extras=()
[ "${SAM2LONG_RAY:-1}" = 0 ] || extras+=("ray>=2.60")   # SAM2LONG_RAY=0 skips Ray
pip_install -r requirements.txt "pytest>=7" "${extras[@]}"

# Test-only: two independent Cryptomatte decoders and the reference MurmurHash3 that
# tests/test_cryptomatte.py checks our files with (see requirements-dev.txt). decryptomatte
# pins numpy<2 and openimageio<3 but runs with ours, hence --no-deps. Optional: without
# them (no wheel for this platform, or SAM2LONG_DECODERS=0) those checks are skipped.
if [ "${SAM2LONG_DECODERS:-1}" != 0 ]; then
    pip_install "cryptomatte-api>=1.0" "mmh3>=4" && pip_install --no-deps "decryptomatte==1.0.1" \
        || echo "== the Cryptomatte test decoders were not installed: their checks will be skipped"
fi

# SAM 2, and SAM 3's tracker code unless SAM2LONG_SAM3=0, without dependencies.
"$PY" install.py

# sam2long itself, editable (the `sam2long` command comes with it); its isolated build
# environment needs only setuptools.
pip_install --no-deps -e .
"$PY" -c "import sam2, sam2long, torch, OpenImageIO; print('== ready: sam2long', sam2long.__version__, '| torch', torch.__version__)"
