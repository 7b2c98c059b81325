"""Importing SAM 3's tracker modules without SAM 3's detector stack.

`import sam3` runs the package's whole detector stack (torchvision, triton, Hugging
Face hub, the BPE tokenizer); the tracker needs none of them. `sam3_modules` imports
the tracker's own modules without the package's ``__init__``; where torchvision,
triton or timm's ``__init__`` do not import, four import-time-only names get
stand-ins that raise if ever used (see `_isolated_import`). SAM 3's arithmetic is
untouched: every module that computes is the package's (or timm's) own file.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path

# Without dependencies: sam3's and timm's declared ones (torchvision, triton) can replace torch.
INSTALL_HINT = ("install it with the pack's install.py (python install.py), or: "
                "pip install --no-deps sam3==0.1.4 timm einops")
TRACKER_CLASS_MODULE = "sam3.model.sam3_tracker_base"  # where Sam3TrackerBase is defined


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:  # a missing or broken optional dependency (e.g. torchvision's ops)
        return False


class _Unavailable:
    """Stands in for a name that SAM 3 imports but the tracker never calls."""

    def __init__(self, what: str, needs: str):
        self._what, self._needs = what, needs

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            f"{self._what} needs {self._needs}, which is not installed; SAM2Long's SAM 3 tracker "
            f"does not use it. Fix: install {self._needs} to use this part of sam3"
        )


def _module(name: str, path: Path | None = None, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    if path is not None:  # a package whose submodules import normally, without its __init__
        mod.__path__ = [str(path)]
        mod.__spec__ = importlib.util.spec_from_loader(name, loader=None, is_package=True)
        mod.__spec__.submodule_search_locations = [str(path)]
    mod.__dict__.update(attrs)
    return mod


@contextlib.contextmanager
def _stand_ins(modules: dict[str, types.ModuleType]):
    """Put `modules` in sys.modules for the imports inside, then take them out again
    (names already bound stay bound; later imports see the real state)."""
    added = [name for name in modules if name not in sys.modules]
    sys.modules.update({name: modules[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _timm_layers() -> types.ModuleType:
    """timm's DropPath, Mlp and trunc_normal_, from timm's own files, without the
    package's __init__ files (timm's __init__ imports torchvision)."""
    spec = importlib.util.find_spec("timm")
    if spec is None:
        raise ImportError(f"SAM 3 needs timm, which is not installed; {INSTALL_HINT}")
    root = Path(spec.submodule_search_locations[0])
    timm, layers = _module("timm", root), _module("timm.layers", root / "layers")
    with _stand_ins({"timm": timm, "timm.layers": layers}):
        mlp = importlib.import_module("timm.layers.mlp")
        drop = importlib.import_module("timm.layers.drop")
        init = importlib.import_module("timm.layers.weight_init")
        for name in [n for n in sys.modules if n.startswith("timm.layers.")]:
            del sys.modules[name]  # these were loaded under the stand-in packages
    return _module("timm.layers", DropPath=drop.DropPath, Mlp=mlp.Mlp, trunc_normal_=init.trunc_normal_)


def _isolated_import() -> None:
    """Import the tracker's modules without `sam3`'s __init__, also where `import sam3`
    fails (no torchvision, no triton).

    The `sam3` package is registered without running its __init__ (which imports the
    detector API). Then, only for a dependency that does not import, a stand-in, each
    for an import that the tracker's code never calls:
    * ``torchvision.ops.roi_align.RoIAlign``: the detector's box pooling, imported at
      the top of sam3/model/decoder.py, where the tracker's memory attention lives;
    * ``sam3.model.edt``: a triton kernel for training-time click sampling;
    * ``sam3.train.data.collator``: a type annotation on ``Sam3TrackerBase.forward``
      (which raises); the stand-in holds the real class from sam3.model.data_misc;
    * ``timm.layers``: timm's own DropPath, Mlp, trunc_normal_ (see `_timm_layers`).
    """
    spec = importlib.util.find_spec("sam3")
    if spec is None:
        raise ImportError(f"SAM 3 support needs the sam3 package, which is not installed; {INSTALL_HINT}")
    root = Path(spec.submodule_search_locations[0])
    sys.modules["sam3"] = _module("sam3", root)
    stand_ins = {}
    if not _importable("timm.layers"):
        stand_ins["timm.layers"] = _timm_layers()
        stand_ins["timm"] = _module("timm", layers=stand_ins["timm.layers"])
    if not _importable("torchvision.ops.roi_align"):
        roi = _module("torchvision.ops.roi_align", RoIAlign=_Unavailable("RoIAlign (SAM 3's detector)", "torchvision"))
        stand_ins.update({"torchvision": _module("torchvision"), "torchvision.ops": _module("torchvision.ops")})
        stand_ins["torchvision.ops.roi_align"] = roi
    if not _importable("triton"):
        stand_ins["sam3.model.edt"] = _module("sam3.model.edt", edt_triton=_Unavailable("sam3's EDT kernel", "triton"))
    data_misc = importlib.import_module("sam3.model.data_misc")
    if not _importable("sam3.train.data.collator"):
        stand_ins["sam3.train.data.collator"] = _module(
            "sam3.train.data.collator", BatchedDatapoint=data_misc.BatchedDatapoint
        )
    with _stand_ins(stand_ins):
        for name in _TRACKER_MODULES:
            importlib.import_module(name)


_TRACKER_MODULES = (
    "sam3.model.vitdet",
    "sam3.model.position_encoding",
    "sam3.model.necks",
    "sam3.model.vl_combiner",
    "sam3.model.memory",
    "sam3.model.decoder",
    "sam3.model.model_misc",
    "sam3.sam.transformer",
    TRACKER_CLASS_MODULE,
    "sam3.model.sam3_tracking_predictor",
)


@functools.cache
def sam3_modules() -> types.SimpleNamespace:
    """The `sam3` modules the tracker is built from (imported once).

    The package's ``__init__`` is not run unless the application already imported
    `sam3`: it imports the detector stack and, on Ampere GPUs, switches TF32 matmuls
    on for the whole process (model_builder's ``_setup_tf32``). Raises ImportError,
    saying how to install it, when `sam3` is missing.
    """
    if "sam3" not in sys.modules:
        _isolated_import()
    mods = [importlib.import_module(name) for name in _TRACKER_MODULES]
    return types.SimpleNamespace(**{name.rsplit(".", 1)[1]: mod for name, mod in zip(_TRACKER_MODULES, mods)})



def is_tracker_net(net) -> bool:
    """Whether `net` is SAM 3's tracker (a ``Sam3TrackerBase``), by its class. Imports
    nothing: a net of that class exists only once its module has been imported."""
    module = sys.modules.get(TRACKER_CLASS_MODULE)
    return module is not None and isinstance(net, module.Sam3TrackerBase)
