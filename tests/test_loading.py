"""Tests for sam2long.models.loading and sam2long.models.weights: formats, variant detection, bad checkpoints, Hydra.

Everything runs on the CPU with seeded random weights at a small image size.
"""

from __future__ import annotations

import argparse
import os
from importlib import resources

import pytest
import torch
from safetensors.torch import save_file

import sam2long
from sam2long.errors import CheckpointError
from sam2long.models.loading import load_model
from sam2long.models.model import VARIANT_CONFIGS, VARIANTS, build_net
from sam2long.models.weights import PATCH_EMBED_KEY, TRUNK_SIZES, detect_variant, read_checkpoint, verify_checkpoint

SIZE = 128
TINY = "sam2.1_hiera_tiny"


def random_state_dict(variant: str, seed: int = 0, image_size: int = SIZE) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = build_net(variant, image_size=image_size)
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    # Some tensors are zero-initialised; give every tensor distinct random values
    # so that a wrongly loaded tensor cannot pass by chance.
    g = torch.Generator().manual_seed(seed + 1)
    return {k: torch.randn(v.shape, generator=g) for k, v in sd.items()}


def assert_weights(model, expected: dict[str, torch.Tensor]):
    got = model.net.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k].dtype == torch.float32, k
        assert torch.equal(got[k], v.to(torch.float32)), k


@pytest.fixture(scope="module")
def tiny_sd():
    return random_state_dict(TINY)


@pytest.fixture(scope="module")
def tiny_pt(tiny_sd, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_official_layout.pt"
    torch.save({"model": tiny_sd}, path)
    return path


# --------------------------------------------------------------------------- formats


def test_official_pt_layout_round_trip(tiny_sd, tiny_pt):
    model = load_model(tiny_pt, device="cpu", image_size=SIZE)
    assert isinstance(model, sam2long.LoadedModel)
    assert model.variant == TINY
    assert model.device == torch.device("cpu")
    assert model.precision == "fp32"
    assert model.image_size == SIZE
    assert not model.net.training
    assert_weights(model, tiny_sd)


def test_public_entry_point_is_load_model():
    assert sam2long.load_model is load_model


def test_flat_state_dict_pth(tiny_sd, tmp_path):
    path = tmp_path / "flat.pth"
    torch.save(tiny_sd, path)
    model = load_model(path, device="cpu", image_size=SIZE)
    assert model.variant == TINY
    assert_weights(model, tiny_sd)


def test_legacy_pickle_format(tiny_sd, tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"model": tiny_sd}, path, _use_new_zipfile_serialization=False)
    model = load_model(str(path), device="cpu", image_size=SIZE)
    assert_weights(model, tiny_sd)


def test_model_prefix_is_stripped(tiny_sd, tmp_path):
    path = tmp_path / "prefixed.pt"
    torch.save({f"model.{k}": v for k, v in tiny_sd.items()}, path)
    model = load_model(path, device="cpu", image_size=SIZE)
    assert model.variant == TINY
    assert_weights(model, tiny_sd)


def test_safetensors_fp32(tiny_sd, tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_sd.items()}, str(path))
    model = load_model(path, device="cpu", image_size=SIZE)
    assert model.variant == TINY
    assert_weights(model, tiny_sd)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_reduced_precision_repacks_are_upcast(tiny_sd, tmp_path, dtype):
    tag = "fp16" if dtype == torch.float16 else "bf16"
    path = tmp_path / f"{TINY}-{tag}.safetensors"
    save_file({k: v.to(dtype).contiguous() for k, v in tiny_sd.items()}, str(path))
    assert all(t.dtype == dtype for t in read_checkpoint(path).values())
    model = load_model(path, device="cpu", image_size=SIZE)
    assert model.variant == TINY
    rounded = {k: v.to(dtype).to(torch.float32) for k, v in tiny_sd.items()}
    assert_weights(model, rounded)  # fp32 tensors holding exactly the rounded values
    # and rounding really happened, so the comparison above is not vacuous
    assert not torch.equal(rounded[PATCH_EMBED_KEY], tiny_sd[PATCH_EMBED_KEY])


def test_variant_comes_from_tensors_not_file_name(tiny_sd, tmp_path):
    path = tmp_path / "sam2_hiera_large.pt"  # misleading name
    torch.save({"model": tiny_sd}, path)
    assert load_model(path, device="cpu", image_size=SIZE).variant == TINY


def test_sam2_0_tiny_round_trip(tmp_path):
    sd = random_state_dict("sam2_hiera_tiny", seed=3)
    path = tmp_path / "whatever.pt"
    torch.save({"model": sd}, path)
    model = load_model(path, device="cpu", image_size=SIZE)
    assert model.variant == "sam2_hiera_tiny"
    assert_weights(model, sd)


def test_image_size_is_applied_and_weights_do_not_depend_on_it(tiny_sd, tiny_pt):
    model = load_model(tiny_pt, device="cpu", image_size=256)
    assert model.image_size == 256
    assert_weights(model, tiny_sd)
    with pytest.raises(ValueError, match="multiple of 32"):
        load_model(tiny_pt, device="cpu", image_size=100)


# --------------------------------------------------------------------------- variants


def _config_trunk(variant):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(resources.files("sam2").joinpath(VARIANT_CONFIGS[variant]).read_text())
    import inspect

    from sam2.modeling.backbones.hieradet import Hiera

    defaults = {k: p.default for k, p in inspect.signature(Hiera.__init__).parameters.items()}
    trunk = cfg.model.image_encoder.trunk
    embed_dim = trunk.get("embed_dim", defaults["embed_dim"])
    stages = trunk.get("stages", defaults["stages"])  # base_plus uses Hiera's defaults
    return int(embed_dim), int(sum(stages))


@pytest.mark.parametrize("variant", VARIANTS)
def test_all_variants_detected_from_random_state_dicts(variant):
    # Each variant is built once, from its own config, at a small image size,
    # with the networks' own (seeded) random initialisation.
    torch.manual_seed(VARIANTS.index(variant))
    sd = build_net(variant, image_size=SIZE).state_dict()
    assert detect_variant(sd) == variant
    # the same tensors under a "model." prefix, and in half precision
    assert detect_variant({f"model.{k}": v for k, v in sd.items()}) == variant
    if variant.endswith("tiny"):  # dtype plays no part; checking once per family is enough
        assert detect_variant({k: v.half() for k, v in sd.items()}) == variant
    # the table agrees with the config the net was built from
    dim, blocks = _config_trunk(variant)
    assert sd[PATCH_EMBED_KEY].shape[0] == dim
    assert TRUNK_SIZES[(dim, blocks)] == variant.split("_hiera_")[1]
    has21 = "no_obj_embed_spatial" in sd and "obj_ptr_tpos_proj.weight" in sd
    assert has21 == variant.startswith("sam2.1")


def test_weight_shapes_do_not_depend_on_image_size():
    small = build_net(TINY, image_size=128).state_dict()
    full = build_net(TINY, image_size=1024).state_dict()
    assert {k: v.shape for k, v in small.items()} == {k: v.shape for k, v in full.items()}


# --------------------------------------------------------------------------- bad files


def test_missing_file():
    with pytest.raises(CheckpointError, match="not found") as e:
        load_model("/nonexistent/folder/my_weights.pt", device="cpu")
    assert "/nonexistent/folder/my_weights.pt" in str(e.value)


def test_missing_file_with_official_name_says_where_to_download(tmp_path):
    path = tmp_path / "models" / "sam2.1_hiera_small.pt"
    with pytest.raises(CheckpointError) as e:
        load_model(path, device="cpu")
    msg = str(e.value)
    assert str(path) in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_small.pt" in msg


def test_missing_name_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM2LONG_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError) as e:
        load_model("sam2_hiera_base_plus", device="cpu", search_dirs=[tmp_path / "m"], download=False)
    msg = str(e.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_base_plus.pt" in msg
    assert str(tmp_path / "m") in msg


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty"),
        (bytes(range(7, 250)) * 40, "not a PyTorch"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "web page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n", "Git LFS"),
    ],
    ids=["empty", "garbage", "html", "lfs-pointer"],
)
def test_unreadable_bytes(tmp_path, content, words):
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=words) as e:
        load_model(path, device="cpu", image_size=SIZE)
    # the fix names the file to fetch again
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in str(e.value)


def test_truncated_pt(tiny_pt, tmp_path):
    data = tiny_pt.read_bytes()
    for keep in (len(data) // 2, len(data) - 100):
        path = tmp_path / f"cut{keep}.pt"
        path.write_bytes(data[:keep])
        with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
            load_model(path, device="cpu", image_size=SIZE)
        assert str(path) in str(e.value)


def test_truncated_legacy_pickle(tiny_sd, tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"model": tiny_sd}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(path, device="cpu", image_size=SIZE)


def test_truncated_safetensors(tiny_sd, tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({k: v.half().contiguous() for k, v in tiny_sd.items()}, str(path))
    data = path.read_bytes()
    for keep in (len(data) - 1000, 200):  # cut in the data, cut in the header
        cut = tmp_path / f"cut{keep}.safetensors"
        cut.write_bytes(data[:keep])
        with pytest.raises(CheckpointError, match="truncated"):
            load_model(cut, device="cpu", image_size=SIZE)


def test_pickle_with_python_objects_is_refused(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(CheckpointError, match="Python objects"):
        load_model(path, device="cpu", image_size=SIZE)


def test_unrelated_state_dict(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2))
    path = tmp_path / "sam2.1_hiera_tiny.pt"  # the name does not make it SAM 2
    torch.save(net.state_dict(), path)
    with pytest.raises(CheckpointError, match="not a SAM 2 checkpoint") as e:
        load_model(path, device="cpu", image_size=SIZE)
    msg = str(e.value)
    assert PATCH_EMBED_KEY in msg and "image_encoder.trunk.blocks." in msg
    assert "0.weight" in msg  # shows what it found


def test_not_a_dict_of_tensors(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(CheckpointError, match="not a dict of tensors"):
        load_model(path, device="cpu", image_size=SIZE)


def test_unknown_trunk_size(tiny_sd):
    sd = {k: v for k, v in tiny_sd.items() if not k.startswith("image_encoder.trunk.blocks.11.")}
    with pytest.raises(CheckpointError, match="embed dim 96 with 11 blocks"):
        detect_variant(sd)


def _bad_file(tmp_path, sd, name="bad.pt"):
    path = tmp_path / name
    torch.save({"model": sd}, path)
    return path


def test_missing_tensor(tiny_sd, tmp_path):
    name = "memory_encoder.out_proj.weight"
    sd = {k: v for k, v in tiny_sd.items() if k != name}
    with pytest.raises(CheckpointError) as e:
        load_model(_bad_file(tmp_path, sd), device="cpu", image_size=SIZE)
    msg = str(e.value)
    assert "missing tensors (1)" in msg and name in msg
    assert f"'{TINY}'" in msg


def test_missing_sam21_marker_still_guessed_as_21(tiny_sd, tmp_path):
    sd = {k: v for k, v in tiny_sd.items() if k != "no_obj_embed_spatial"}
    with pytest.raises(CheckpointError, match="missing tensors \\(1\\): no_obj_embed_spatial") as e:
        load_model(_bad_file(tmp_path, sd), device="cpu", image_size=SIZE)
    assert f"'{TINY}'" in str(e.value)


def test_extra_tensor(tiny_sd, tmp_path):
    sd = dict(tiny_sd)
    sd["image_encoder.neck.extra_head.weight"] = torch.zeros(4, 4)
    with pytest.raises(CheckpointError) as e:
        load_model(_bad_file(tmp_path, sd), device="cpu", image_size=SIZE)
    msg = str(e.value)
    assert "unexpected tensors (1): image_encoder.neck.extra_head.weight" in msg
    assert f"'{TINY}'" in msg


def test_misshapen_tensor(tiny_sd, tmp_path):
    name = "sam_mask_decoder.iou_token.weight"
    sd = dict(tiny_sd)
    expected = tuple(sd[name].shape)
    sd[name] = torch.zeros(expected[0] + 1, expected[1])
    with pytest.raises(CheckpointError) as e:
        load_model(_bad_file(tmp_path, sd), device="cpu", image_size=SIZE)
    msg = str(e.value)
    assert f"{name} (expected {expected}, found {(expected[0] + 1, expected[1])})" in msg
    assert f"'{TINY}'" in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in msg


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_verify_checkpoint(tiny_pt):
    assert verify_checkpoint(tiny_pt) == TINY
    with pytest.raises(CheckpointError, match="not 'sam2_hiera_tiny'"):
        verify_checkpoint(tiny_pt, expected_variant="sam2_hiera_tiny")


# --------------------------------------------------------------------------- precision


@pytest.mark.parametrize("precision", ["auto", "fp32", "fp16", "bf16"])
def test_cpu_always_computes_fp32(tiny_pt, precision):
    model = load_model(tiny_pt, device="cpu", precision=precision, image_size=SIZE)
    assert model.precision == "fp32"
    assert all(p.dtype == torch.float32 for p in model.net.parameters())
    with model.autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_bad_precision_fails_before_reading_anything():
    with pytest.raises(ValueError, match="precision must be one of") as e:
        load_model("/nonexistent.pt", device="cpu", precision="int8")
    assert not isinstance(e.value, CheckpointError)


# --------------------------------------------------------------------------- Hydra


def test_load_model_with_foreign_global_hydra_and_other_cwd(tiny_sd, tiny_pt, tmp_path, monkeypatch):
    import sam2  # noqa: F401  (initialises Hydra for its own configs)
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    conf = tmp_path / "other_app_conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("unrelated: 1\n")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    os.symlink(tiny_pt, cwd / "relative.pt")
    monkeypatch.chdir(cwd)

    backup = get_gh_backup()
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf), version_base="1.2"):
            assert GlobalHydra.instance().is_initialized()
            model = load_model("relative.pt", device="cpu", image_size=SIZE)
            assert model.variant == TINY
            assert_weights(model, tiny_sd)
        GlobalHydra.instance().clear()  # and with no Hydra state at all
        assert load_model(tiny_pt, device="cpu", image_size=SIZE).variant == TINY
    finally:
        GlobalHydra.instance().clear()
        restore_gh_from_backup(backup)


def test_loaded_and_hand_made_models_carry_sam2s_family(tiny_pt):
    from sam2long.engine.tree import TreeConfig
    from sam2long.models.family import SAM2_FAMILY
    from sam2long.models.model import LoadedModel

    loaded = load_model(tiny_pt, device="cpu", image_size=SIZE)
    assert loaded.family is SAM2_FAMILY
    assert LoadedModel.from_net(build_net(TINY, image_size=SIZE), TINY, device="cpu").family is SAM2_FAMILY
    assert TreeConfig.plain(loaded.family) == TreeConfig.sam2()


def test_bad_arguments_are_refused_before_a_checkpoint_is_looked_for(tmp_path, monkeypatch):
    # the name is in no folder (a "not found" error, or a download): the arguments are refused first
    monkeypatch.setenv("SAM2LONG_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="precision must be one of"):
        load_model("sam2.1_hiera_tiny", device="cpu", precision="fp8", download=False)
    with pytest.raises(ValueError, match="multiple of 32"):
        load_model("sam2.1_hiera_tiny", device="cpu", image_size=100, download=False)
