"""Loading SAM 3 through the project's entry points: `load_model`, model names
(folders, cache, the gated download), the CLI's model loading and the ComfyUI loader.

Skipped when `sam3` is not importable. Checkpoints are written from a reduced
random-weight tracker (`sam3_testing.REDUCED`), loaded by `sam3_testing.load_reduced`
(`load_model`'s resolution and file loading with REDUCED's sizes: `load_model` itself
refuses a reduced trunk as not SAM 3's).
"""

from __future__ import annotations

import io
import os
import urllib.error

import pytest
import torch
from safetensors.torch import save_file

from sam2long.errors import CheckpointError
from sam2long.models.catalog import SAM3_URL, variant_from_name
from sam2long.models.checkpoints import resolve_checkpoint
from sam2long.models.loading import load_model
from sam2long.models.sam3 import checkpoint as sam3_checkpoint, network as sam3_network, shims as sam3_shims

try:
    sam3_shims.sam3_modules()
except ImportError as e:  # the optional extra is not installed
    pytest.skip(f"sam3 is not importable: {e}", allow_module_level=True)

from sam3_testing import FAKE_DETECTOR, REDUCED, load_reduced, official_layout  # noqa: E402
from test_nodes import comfy, run  # noqa: E402,F401  (the fake ComfyUI fixture)
from loader_options import use_small_models


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SAM2LONG_CACHE", str(cache))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return cache


@pytest.fixture(scope="module")
def source():
    """A reduced tracker whose every tensor is distinct random values (so a tensor
    loaded into the wrong place cannot pass), RoPE tables left as built."""
    torch.manual_seed(5)
    net = sam3_network.build_tracker_net(REDUCED)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point() and not name.endswith(sam3_checkpoint.ROPE_TABLE):
                t.copy_(torch.randn(t.shape, generator=g))
    return net


@pytest.fixture(scope="module")
def official_pt(source, tmp_path_factory):
    path = tmp_path_factory.mktemp("sam3") / "sam3.pt"
    torch.save(official_layout(source), path)
    return path


def assert_same_weights(model, source, dtype=None):
    got, want = model.net.state_dict(), source.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype, k
        expected = v.to(dtype).to(v.dtype) if dtype is not None and v.is_floating_point() else v
        assert torch.equal(got[k], expected), k


def test_official_pt_loads_the_tracker_only(official_pt, source):
    model = load_reduced(official_pt, device="cpu")
    assert model.variant == "sam3" and model.image_size == REDUCED.image_size
    assert model.device == torch.device("cpu") and model.precision == "fp32" and not model.net.training
    assert_same_weights(model, source)
    names = list(model.net.state_dict())
    # nothing of the detector is kept: no text encoder, fusion transformer, heads or detector neck
    assert not any(k.startswith(("language_backbone", "segmentation_head", "backbone.vision_backbone.convs.")) for k in names)
    assert not hasattr(model.net.backbone.vision_backbone, "convs")
    assert len(names) == len(official_layout(source)) - len(FAKE_DETECTOR)


def test_bf16_safetensors_repack(source, tmp_path):
    repack = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in official_layout(source).items()}
    path = tmp_path / "sam3-bf16.safetensors"
    save_file(repack, str(path))
    model = load_reduced(path, device="cpu")
    assert model.variant == "sam3"
    assert all(v.dtype != torch.bfloat16 for v in model.net.state_dict().values())
    assert_same_weights(model, source, dtype=torch.bfloat16)


def test_tracker_only_and_wrapped_layouts(source, tmp_path):
    tracker_only = tmp_path / "tracker.pt"
    torch.save(source.state_dict(), tracker_only)
    assert_same_weights(load_reduced(tracker_only, device="cpu"), source)
    # a repack that wraps Meta's names in one more prefix, as ComfyUI's checkpoints do
    wrapped = {"model.diffusion_model." + k: v for k, v in official_layout(source).items()}
    wrapped["text_encoders.clip.weight"] = torch.zeros(2)  # outside the wrapper: left out
    path = tmp_path / "comfy_sam3.safetensors"
    save_file(wrapped, str(path))
    assert_same_weights(load_reduced(path, device="cpu"), source)


def test_loaded_and_hand_made_sam3_models_carry_sam3s_family(official_pt, source):
    from sam2long.engine.tree import TreeConfig
    from sam2long.models.model import LoadedModel
    from sam2long.models.sam3.family import Sam3Family

    loaded = load_reduced(official_pt, device="cpu")
    assert isinstance(loaded.family, Sam3Family)
    assert TreeConfig.plain(loaded.family) == TreeConfig.sam3()
    # built by hand: the family follows the network's class, whatever the variant string says
    assert isinstance(LoadedModel.from_net(source, "my-tracker", device="cpu").family, Sam3Family)


def test_sam2_checkpoint_still_loads(tmp_path):
    from sam2long.models.model import build_net

    torch.manual_seed(0)
    sd = build_net("sam2.1_hiera_tiny", image_size=128).state_dict()
    path = tmp_path / "tiny.pt"
    torch.save({"model": sd}, path)
    model = load_model(path, device="cpu", image_size=128)
    assert model.variant == "sam2.1_hiera_tiny" and model.image_size == 128


def test_bad_sam3_files_are_checkpoint_errors(official_pt, tmp_path):
    data = official_pt.read_bytes()
    cut = tmp_path / "sam3.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_reduced(cut, device="cpu")

    sd = official_layout(sam3_network.build_tracker_net(REDUCED))
    sd["tracker.obj_ptr_proj.layers.0.weight"] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pt"
    torch.save(sd, bad)
    with pytest.raises(CheckpointError, match=r"wrong shape \(1\): obj_ptr_proj.layers.0.weight \(expected \(256, 256\), found \(3, 3\)\)"):
        load_reduced(bad, device="cpu")
    # without the test config the reduced trunk is not SAM 3's
    with pytest.raises(CheckpointError, match="unknown SAM 3 image encoder"):
        load_model(official_pt, device="cpu")


def test_sam31_is_refused_by_name(tmp_path):
    sd = {
        "detector.backbone.vision_backbone.trunk.patch_embed.proj.weight": torch.zeros(8, 3, 14, 14),
        "tracker.model.interactive_sam_mask_decoder.iou_token.weight": torch.zeros(1, 8),
    }
    path = tmp_path / "sam3.1_multiplex.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="SAM 3.1 .*Fix: use Meta's sam3.pt"):
        load_model(path, device="cpu")


def test_image_size_is_fixed_for_sam3(official_pt):
    with pytest.raises(ValueError, match=r"image_size 1024 does not apply to SAM 3.*fixed at 224.*leave image_size unset"):
        load_reduced(official_pt, device="cpu", image_size=1024)
    assert load_reduced(official_pt, device="cpu", image_size=224).image_size == 224
    with pytest.raises(ValueError, match="multiple of 32 \\(SAM 2\\) or 1008 \\(SAM 3\\)"):
        load_model(official_pt, device="cpu", image_size=1000)  # refused before the file is read


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["sam3", "sam3.pt", "sam3.safetensors", "SAM3-fp16.safetensors"])
def test_sam3_names(name):
    assert variant_from_name(name) == "sam3"
    assert variant_from_name("sam3.1_multiplex_fp16.safetensors") is None


def test_name_found_in_dirs_then_cache(official_pt, isolated_cache, tmp_path, source):
    models = tmp_path / "models" / "sam3"
    models.mkdir(parents=True)
    isolated_cache.mkdir()
    (isolated_cache / "sam3.pt").write_bytes(official_pt.read_bytes())
    assert resolve_checkpoint("sam3", search_dirs=[models], download=False) == isolated_cache / "sam3.pt"
    save_file(official_layout(source), str(models / "sam3.safetensors"))
    assert resolve_checkpoint("sam3.pt", search_dirs=[models], download=False) == models / "sam3.safetensors"
    model = load_reduced("sam3", device="cpu", search_dirs=[models], download=False)
    assert model.variant == "sam3"


def _refusing(code):
    def opener(request, timeout=None):
        opener.requests.append(request)
        if code is None:
            raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))
        raise urllib.error.HTTPError(request.full_url, code, "Unauthorized", {}, io.BytesIO(b""))

    opener.requests = []
    return opener


@pytest.mark.parametrize("code", [None, 401, 403])
def test_gated_download_says_how_to_get_access(code, tmp_path, isolated_cache, monkeypatch):
    models = tmp_path / "ComfyUI" / "models" / "sam3"
    opener = _refusing(code)
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint("sam3", search_dirs=[models], progress=False, urlopen=opener)
    msg = str(e.value)
    assert [r.full_url for r in opener.requests] == [SAM3_URL]
    assert SAM3_URL == "https://huggingface.co/facebook/sam3/resolve/main/sam3.pt"
    assert "gated" in msg and "accept the SAM License at huggingface.co/facebook/sam3" in msg
    assert "sam3.pt" in msg and str(models) in msg and str(isolated_cache) in msg and "HF_TOKEN" in msg
    assert ("offline" in msg) == (code is None) and ("access refused" in msg) == (code is not None)
    assert opener.requests[0].get_header("Authorization") is None
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())  # nothing half-written


def test_hf_token_is_sent_to_hugging_face_only(monkeypatch):
    from sam2long.models.checkpoints import download_checkpoint

    monkeypatch.setenv("HF_TOKEN", "hf_test")
    opener = _refusing(401)
    with pytest.raises(CheckpointError):
        download_checkpoint("sam3", progress=False, urlopen=opener)
    with pytest.raises(CheckpointError):
        download_checkpoint("sam3", url="https://example.org/sam3.pt", progress=False, urlopen=opener)
    assert [r.get_header("Authorization") for r in opener.requests] == ["Bearer hf_test", None]


def test_downloaded_sam3_is_checked_and_cached(isolated_cache, tmp_path):
    """A served file with SAM 3's trunk shape and layout is renamed into the cache; a
    SAM 2 file served under that name is refused and nothing is left."""
    from sam2long.models.checkpoints import download_checkpoint

    # the check of a download looks at the layout and the trunk's sizes only
    sd = {sam3_checkpoint.DETECTOR_PREFIX + sam3_checkpoint.PATCH_EMBED: torch.zeros(1024, 3, 14, 14, dtype=torch.float16)}
    sd.update({f"{sam3_checkpoint.DETECTOR_PREFIX}{sam3_checkpoint.BLOCKS}{i}.norm1.weight": torch.zeros(1) for i in range(32)})
    sd["tracker.sam_mask_decoder.iou_token.weight"] = torch.zeros(1, 256)
    buf = io.BytesIO()
    torch.save(sd, buf)

    class Response(io.BytesIO):
        headers = {}

    path = download_checkpoint("sam3", progress=False, urlopen=lambda r, timeout=None: Response(buf.getvalue()))
    assert path == isolated_cache / "sam3.pt" and path.read_bytes() == buf.getvalue()
    other = io.BytesIO()
    torch.save({"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(96, 3, 7, 7)}, other)
    with pytest.raises(CheckpointError, match="failed its check.*not a SAM 3 checkpoint"):
        download_checkpoint("sam3", tmp_path / "d", progress=False, urlopen=lambda r, timeout=None: Response(other.getvalue()))
    assert list((tmp_path / "d").iterdir()) == []


# --------------------------------------------------------------------------- CLI


def test_cli_loads_sam3_by_file_and_name(official_pt, isolated_cache, monkeypatch, capsys):
    from sam2long.models import loading
    from sam2long.app import cli
    from sam2long.app.run import load_model_for

    seen = []

    def with_reduced(*args, **kw):  # the CLI's own call, loaded with the reduced sizes
        seen.append((args, kw))
        return load_reduced(*args, **kw)

    monkeypatch.setattr(loading, "load_model", with_reduced)
    parser = cli.build_parser()
    isolated_cache.mkdir()
    (isolated_cache / "sam3.pt").write_bytes(official_pt.read_bytes())
    for ckpt in (str(official_pt), "sam3"):
        args = parser.parse_args(["track", "clip.mp4", "--checkpoint", ckpt, "--out", "o", "--device", "cpu"])
        assert load_model_for(cli.job_from_args(args).model).variant == "sam3"
    assert [a[0][0] for a in seen] == [str(official_pt), "sam3"] and all("image_size" not in a[1] for a in seen)
    with pytest.raises(SystemExit):
        parser.parse_args(["track", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "SAM 3's is fixed at 1008" in shown and "sam3.pt" in shown


# --------------------------------------------------------------------------- ComfyUI loader


def test_comfyui_loader_lists_and_loads_sam3(comfy, official_pt, monkeypatch):
    from nodes import paths
    from nodes.loader import SAM2LongModelLoader

    sam3_dir = comfy.models / "sam3"  # registered by the pack like models/sam2
    core_dir = comfy.models / "checkpoints"  # where core ComfyUI's SAM 3 nodes load from
    sam3_dir.mkdir(exist_ok=True)
    core_dir.mkdir(exist_ok=True)
    (sam3_dir / "sam3.pt").write_bytes(official_pt.read_bytes())
    (core_dir / "sam3_fp16.safetensors").write_bytes(b"a SAM 3 name: listed")
    (core_dir / "sam3.1_multiplex_fp16.safetensors").write_bytes(b"SAM 3.1: not listed")
    (core_dir / "sd_xl_base_1.0.safetensors").write_bytes(b"not SAM: not listed")
    options = SAM2LongModelLoader.define_schema().inputs[0].options
    assert "sam3.pt" in options and "sam3_fp16.safetensors" in options
    assert not any("sam3.1" in o or "sd_xl" in o for o in options)
    assert paths.full_path("sam3_fp16.safetensors") == str(core_dir / "sam3_fp16.safetensors")
    assert paths.find("sd_xl_base_1.0.safetensors") is None
    assert SAM2LongModelLoader.validate_inputs(ckpt_name="sam3.pt") is True
    assert os.path.join(str(comfy.models), "sam3") in SAM2LongModelLoader.validate_inputs(ckpt_name="none.pt")

    # the reduced tracker's sizes, as the test settings give them to the loader
    use_small_models(monkeypatch, sam3_sizes=REDUCED)
    (h,), _ = run(comfy, "SAM2LongModelLoader", ckpt_name="sam3.pt", device="cpu")
    assert h.loaded.variant == "sam3" and h.loaded.image_size == REDUCED.image_size
    assert h.patcher is not None and h.patcher.model.net is h.loaded.net
    assert h.acquire().variant == "sam3"
