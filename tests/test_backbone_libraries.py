"""The timm and torchvision backbone libraries: one-pass features against naive per-layer computations,
token shapes and names, argument checks, offline fail-fast weights, seeded random init, preprocessing.

Random-init networks only (nothing is downloaded); small models, or one image at DINOv2's 518 px.
"""

import hashlib
import json
import logging
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from safetensors.torch import save_file

from tbdencoder.features import backbone_registry
from tbdencoder.features.backbone_registry import WeightsUnavailableError, load_backbone, resolve_backbone
from tbdencoder.features.libraries import timm_vit, torchvision_cnn
from tbdencoder.features.libraries.timm_vit import TimmViT
from tbdencoder.features.libraries.torchvision_cnn import TorchvisionCNN

ALEXNET_TUTORIAL_LAYERS = ["features.2", "features.5", "features.7", "features.9", "features.12",
                           "classifier.2", "classifier.5", "classifier.6"]


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt or sleep fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network or sleep used: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(time, "sleep", refuse)


@pytest.fixture
def empty_caches(monkeypatch, tmp_path):
    """An empty torch hub dir and an empty Hugging Face hub cache; returns the torch hub dir."""
    import huggingface_hub.constants

    hub = tmp_path / "torch_hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_hub"))
    return hub


def put_in_hf_cache(cache: Path, repo_id: str, filename: str, source: Path) -> None:
    """`source` as `filename` of `repo_id` in a Hugging Face hub cache, laid out as `hf download` leaves it:
    models--<org>--<name>/{blobs/<sha>, snapshots/<commit>/<file> -> blob, refs/main = <commit>}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    blob = repo / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
    blob.parent.mkdir(parents=True)
    shutil.copy(source, blob)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / filename).symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def images(size: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected.float(), rtol=1e-5, atol=1e-5)


def naive_tokens(name: str, spatial_map: torch.Tensor, global_vector: torch.Tensor, grid_size: int,
                 map_size: int) -> dict[str, torch.Tensor]:
    """global / grid / map written out for one layer's (batch, C, H, W) map."""
    height, width = spatial_map.shape[2:]
    unpooled = F.adaptive_avg_pool2d(spatial_map, (min(height, map_size), min(width, map_size)))
    return {f"{name}/global": global_vector,
            f"{name}/grid": F.adaptive_avg_pool2d(spatial_map, grid_size).permute(0, 2, 3, 1),
            f"{name}/map": unpooled.permute(0, 2, 3, 1)}


def vit_blocks_by_hand(model, x: torch.Tensor, blocks: list[int]) -> dict[int, torch.Tensor]:
    """Tokens (batch, tokens, C) after each requested 1-based block, running `model.blocks` one by one."""
    out = {}
    with torch.inference_mode():
        tokens = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        for index, block in enumerate(model.blocks, start=1):
            tokens = block(tokens)
            if index in blocks:
                out[index] = tokens.clone()
    return out


def vit_naive_features(model, x: torch.Tensor, blocks: list[int], grid_size: int, map_size: int) -> dict:
    """Per block: the class token (or the mean patch token) and the patch tokens (registers dropped), pooled."""
    side = x.shape[-1] // model.patch_embed.patch_size[0]
    expected = {}
    for block, tokens in vit_blocks_by_hand(model, x, blocks).items():
        patches = tokens[:, model.num_prefix_tokens:]
        spatial_map = patches.reshape(len(x), side, side, -1).permute(0, 3, 1, 2)
        global_vector = tokens[:, 0] if model.has_class_token else patches.mean(1)
        expected.update(naive_tokens(f"block{block:02d}", spatial_map, global_vector, grid_size, map_size))
    return expected


# --- timm ---------------------------------------------------------------------------------------------------


def test_timm_one_pass_equals_block_by_block():
    spec = TimmViT.resolve("vit_tiny_patch16_224", None, True, [12, 2, 5])
    assert spec.layers == ("block02", "block05", "block12") and spec.spatial == (True, True, True)
    loaded = TimmViT.load(spec, seed=0)
    x = images(224)
    features = loaded.features(x, grid_size=2, map_size=5, embedding=True)
    expected = vit_naive_features(loaded.model, x, [2, 5, 12], grid_size=2, map_size=5)
    with torch.inference_mode():
        expected["embedding"] = loaded.model.forward_head(loaded.model.forward_features(x), pre_logits=True)
    assert sorted(features) == sorted(expected)
    for key, value in expected.items():
        assert features[key].dtype == torch.float32 and features[key].device.type == "cpu"
        assert_close(features[key], value)
    assert features["block05/map"].shape == (2, 5, 5, 192) and features["embedding"].shape == (2, 192)
    # without the embedding the pass stops early; the layers are the same
    early = loaded.features(x, grid_size=2, map_size=None, embedding=False)
    assert sorted(early) == ["block02/global", "block02/grid", "block05/global", "block05/grid",
                             "block12/global", "block12/grid"]
    for key, value in early.items():
        assert_close(value, features[key])


def test_dinov2_names_shapes_and_preprocessing():
    spec = TimmViT.resolve("vit_small_patch14_dinov2", "lvd142m", False, [6, 12])
    assert spec.identity == "tag:lvd142m" and spec.layers == ("block06", "block12")
    assert spec.preprocess["input_size"] == [3, 518, 518] and spec.preprocess["interpolation"] == "bicubic"
    # the architecture with random weights (nothing is downloaded) and the same preprocessing
    loaded = TimmViT.load(TimmViT.resolve("vit_small_patch14_dinov2", None, True, [6, 12]), seed=0)
    assert loaded.transform(Image.new("RGB", (640, 480), (120, 30, 200))).shape == (3, 518, 518)
    features = loaded.features(images(518, n=1), grid_size=4, map_size=8, embedding=True)
    assert {key: tuple(value.shape) for key, value in features.items()} == {
        "block06/global": (1, 384), "block06/grid": (1, 4, 4, 384), "block06/map": (1, 8, 8, 384),
        "block12/global": (1, 384), "block12/grid": (1, 4, 4, 384), "block12/map": (1, 8, 8, 384),
        "embedding": (1, 384),
    }


def test_dinov2_registers_are_in_no_token():
    """reg4: `global` is the class token (not a register), grid and map pool the 37 x 37 patch tokens only."""
    loaded = TimmViT.load(TimmViT.resolve("vit_small_patch14_reg4_dinov2", None, True, [3, 9]), seed=1)
    assert loaded.model.num_prefix_tokens == 5  # class token + 4 registers
    x = images(518, n=1)
    features = loaded.features(x, grid_size=3, map_size=40, embedding=False)
    expected = vit_naive_features(loaded.model, x, [3, 9], grid_size=3, map_size=40)
    assert sorted(features) == sorted(expected)
    for key, value in expected.items():
        assert_close(features[key], value)
    assert features["block09/map"].shape == (1, 37, 37, 384)  # map_size above the map: unpooled
    tokens = vit_blocks_by_hand(loaded.model, x, [9])[9]
    assert_close(features["block09/global"], tokens[:, 0])
    for register in range(1, 5):
        assert not torch.allclose(features["block09/global"], tokens[:, register])


def test_vit_without_class_token_takes_the_mean_patch_token():
    loaded = TimmViT.load(TimmViT.resolve("vit_wee_patch16_reg1_gap_256", None, True, [2]), seed=0)
    assert not loaded.model.has_class_token and loaded.model.num_prefix_tokens == 1  # one register
    x = images(256, n=1)
    features = loaded.features(x, grid_size=2, map_size=3, embedding=False)
    for key, value in vit_naive_features(loaded.model, x, [2], grid_size=2, map_size=3).items():
        assert_close(features[key], value)


@pytest.mark.parametrize("model_name, pretrained, layers, message", [
    ("vit_smal_patch14_dinov2", None, [1], "'vit_smal_patch14_dinov2'; did you mean one of ['vit_small_patch14_d"),
    ("resnet50", None, [1], "'resnet50' is a ResNet, not a VisionTransformer"),
    ("vit_small_patch14_dinov2.lvd142m", None, [1], "tag as pretrained"),
    ("vit_small_patch14_dinov2", None, [0, 6], "1..12 (integers), got [0]"),
    ("vit_small_patch14_dinov2", None, [6, 13], "1..12 (integers), got [13]"),
    ("vit_small_patch14_dinov2", None, ["block06"], "got ['block06']"),
    ("vit_small_patch14_dinov2", None, [], "got none"),
])
def test_timm_refuses_bad_choices(model_name, pretrained, layers, message):
    with pytest.raises(ValueError) as error:
        TimmViT.resolve(model_name, pretrained, True, layers)
    assert message in str(error.value)


def test_timm_weights_choice():
    assert TimmViT.resolve("vit_base_patch16_224", "default", False, [1]).pretrained == "augreg2_in21k_ft_in1k"
    with pytest.raises(FileNotFoundError, match=r"'nope' is neither a timm tag of \S+ \(\['lvd142m'\]\)"):
        TimmViT.resolve("vit_small_patch14_dinov2", "nope", False, [1])
    with pytest.raises(ValueError, match="no weights chosen.*lvd142m.*random_init: true"):
        TimmViT.resolve("vit_small_patch14_dinov2", None, False, [1])
    with pytest.raises(ValueError, match="random_init is true, so pretrained must be null"):
        TimmViT.resolve("vit_small_patch14_dinov2", "lvd142m", True, [1])


def test_timm_offline_fails_fast_with_instructions(monkeypatch, empty_caches, no_network):
    probed = []
    monkeypatch.setattr(timm_vit, "reachable", lambda *host: probed.append(host) or False)
    spec = TimmViT.resolve("vit_small_patch14_dinov2", "lvd142m", False, [12])  # no network needed
    monkeypatch.setattr(timm, "create_model", lambda *args, **kwargs: pytest.fail("built before the weights check"))
    with pytest.raises(WeightsUnavailableError) as error:
        TimmViT.load(spec, seed=0)
    assert probed == [("huggingface.co", 443)]
    message = str(error.value)
    for part in ("'vit_small_patch14_dinov2', tag 'lvd142m'", "huggingface.co:443 is unreachable",
                 "hf download timm/vit_small_patch14_dinov2.lvd142m", "HF_HOME", "local weights file",
                 "random_init: true"):
        assert part in message


def test_timm_tag_from_cache_and_local_file_without_network(monkeypatch, tmp_path, empty_caches, no_network):
    """Cached tag weights (a real Hugging Face cache layout) and a local file load offline."""
    import huggingface_hub.constants

    source = timm.create_model("vit_tiny_patch16_224").eval()
    weights = tmp_path / "tiny.safetensors"
    save_file(source.state_dict(), str(weights))
    put_in_hf_cache(Path(huggingface_hub.constants.HF_HUB_CACHE), "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                    "model.safetensors", weights)
    monkeypatch.setattr(timm_vit, "reachable", lambda *host: pytest.fail("probed the network with weights cached"))
    cached = TimmViT.load(TimmViT.resolve("vit_tiny_patch16_224", "augreg_in21k_ft_in1k", False, [3]), seed=0)
    assert cached.spec.identity == "tag:augreg_in21k_ft_in1k"
    local_spec = TimmViT.resolve("vit_tiny_patch16_224", str(weights), False, [3])
    assert local_spec.identity.startswith("sha256:") and local_spec.pretrained == str(weights)
    local = TimmViT.load(local_spec, seed=5)
    x = images(224)
    expected = source.forward_intermediates(x, indices=[2], intermediates_only=True)[0]
    for loaded in (cached, local):
        assert_close(loaded.features(x, grid_size=1, map_size=None, embedding=False)["block03/grid"][:, 0, 0],
                     expected.mean((2, 3)))


def test_timm_random_init_is_seeded_and_announced(logs):
    spec = TimmViT.resolve("vit_tiny_patch16_224", None, True, [4])
    assert spec.identity == "random-init"
    x = images(224, n=1)
    first, again, other = (TimmViT.load(spec, seed).features(x, 2, None, False)["block04/global"] for seed in (3, 3, 4))
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert any(record.levelno == logging.WARNING and "RANDOM-INIT" in record.getMessage() for record in logs.records)


# --- torchvision --------------------------------------------------------------------------------------------


def hooked_features(model, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Each layer's module output from its own forward pass (a hook, cloned before any in-place op)."""
    out = {}
    for layer in layers:
        hook = model.get_submodule(layer).register_forward_hook(
            lambda module, args, output, layer=layer: out.__setitem__(layer, output.clone()))
        with torch.inference_mode():
            model(x)
        hook.remove()
    return out


@pytest.mark.parametrize("model_name, layers, spatial, embedding_input, n_images", [
    ("alexnet", ["classifier.6", "features.0", "features.2", "features.12", "classifier.1", "classifier.5"],
     {"features.0", "features.2", "features.12"}, "classifier.6", 2),
    ("resnet50", ["fc", "layer1", "layer4", "avgpool"], {"layer1", "layer4"}, "fc", 1),
])
def test_torchvision_one_pass_equals_hooks(model_name, layers, spatial, embedding_input, n_images):
    spec = TorchvisionCNN.resolve(model_name, None, True, layers)
    loaded = TorchvisionCNN.load(spec, seed=2)
    x = images(224, n=n_images)
    features = loaded.features(x, grid_size=2, map_size=4, embedding=True)
    with torch.random.fork_rng(devices=[]):  # the same network, built anew with in-place ops untouched
        torch.manual_seed(2)
        model = torchvision.models.get_model(model_name).eval()
    outputs = hooked_features(model, x, layers)
    inputs = []
    model.get_submodule(embedding_input).register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    with torch.inference_mode():
        model(x)
    expected = {"embedding": inputs[0].flatten(1)}
    for layer, output in outputs.items():
        if layer in spatial:
            expected.update(naive_tokens(layer, output, output.mean((2, 3)), grid_size=2, map_size=4))
        else:
            expected[f"{layer}/global"] = output.flatten(1)
    assert sorted(features) == sorted(expected)
    for key, value in expected.items():
        assert features[key].dtype == torch.float32 and features[key].device.type == "cpu"
        assert_close(features[key], value)
    assert tuple(name for name, is_spatial in zip(spec.layers, spec.spatial) if is_spatial) == tuple(
        layer for layer in spec.layers if layer in spatial)
    assert (features["features.0/map"] < 0).any() if model_name == "alexnet" else True  # not overwritten by ReLU


def test_alexnet_tutorial_layers_names_and_shapes():
    spec = TorchvisionCNN.resolve("alexnet", "DEFAULT", False, list(reversed(ALEXNET_TUTORIAL_LAYERS)))
    assert spec.layers == tuple(ALEXNET_TUTORIAL_LAYERS)  # forward order
    assert spec.spatial == (True,) * 5 + (False,) * 3
    assert spec.pretrained == "IMAGENET1K_V1" and spec.identity == "weights:IMAGENET1K_V1"
    loaded = TorchvisionCNN.load(TorchvisionCNN.resolve("alexnet", None, True, ["features.2", "classifier.5"]), 0)
    assert loaded.transform(Image.new("RGB", (300, 200), (10, 200, 90))).shape == (3, 224, 224)
    x = images(224)
    small = loaded.features(x, grid_size=3, map_size=3, embedding=False)
    assert {key: tuple(value.shape) for key, value in small.items()} == {
        "features.2/global": (2, 64), "features.2/grid": (2, 3, 3, 64), "features.2/map": (2, 3, 3, 64),
        "classifier.5/global": (2, 4096),
    }
    full = loaded.features(x, grid_size=3, map_size=100, embedding=True)
    assert full["features.2/map"].shape == (2, 27, 27, 64)  # map_size above the map: unpooled
    assert full["embedding"].shape == (2, 4096)
    assert_close(full["embedding"], full["classifier.5/global"])  # the input of classifier.6


def test_resnet50_layers():
    spec = TorchvisionCNN.resolve("resnet50", "DEFAULT", False, ["avgpool", "layer4", "layer1", "fc"])
    assert spec.layers == ("layer1", "layer4", "avgpool", "fc")
    assert spec.spatial == (True, True, False, False)  # avgpool is 1 x 1: global only
    assert spec.pretrained == "IMAGENET1K_V2" and spec.extra["embedding_module"] == "fc"


@pytest.mark.parametrize("model_name, pretrained, layers, error, message", [
    ("alexnett", None, ["features.2"], ValueError, "'alexnett'; did you mean one of ['alexnet'"),
    ("alexnet", None, ["features.2", "features.99"], ValueError, "unknown: ['features.99']"),
    ("alexnet", None, [3], ValueError, "unknown: [3]"),
    ("alexnet", None, [], ValueError, "unknown: none given"),
    ("vit_b_16", None, ["encoder"], ValueError, "'encoder' outputs shape (197, 768)"),
    ("alexnet", "IMAGENET1K_V9", ["features.2"], FileNotFoundError, "'IMAGENET1K_V9' is neither"),
])
def test_torchvision_refuses_bad_choices(model_name, pretrained, layers, error, message):
    with pytest.raises(error) as raised:
        TorchvisionCNN.resolve(model_name, pretrained, pretrained is None, layers)
    assert message in str(raised.value)


def test_torchvision_offline_fails_fast_with_instructions(monkeypatch, empty_caches, no_network):
    probed = []
    monkeypatch.setattr(torchvision_cnn, "reachable", lambda *host: probed.append(host) or False)
    spec = TorchvisionCNN.resolve("alexnet", "IMAGENET1K_V1", False, ["features.2"])
    monkeypatch.setattr(torchvision.models, "get_model", lambda *args, **kwargs: pytest.fail("built before the check"))
    with pytest.raises(WeightsUnavailableError) as error:
        TorchvisionCNN.load(spec, seed=0)
    assert probed == [("download.pytorch.org", 443)]
    message = str(error.value)
    for part in ("'alexnet'", "IMAGENET1K_V1", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                 str(empty_caches / "checkpoints" / "alexnet-owt-7be5be79.pth"), "local state_dict file",
                 "random_init: true"):
        assert part in message


def test_torchvision_weights_from_cache_and_local_file_without_network(monkeypatch, empty_caches, tmp_path,
                                                                       no_network):
    source = torchvision.models.get_model("squeezenet1_1").eval()
    weights = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT
    cached_file = torchvision_cnn.weights_cache_path(weights)
    cached_file.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached_file)
    local_file = tmp_path / "squeezenet.pth"
    torch.save({"state_dict": source.state_dict()}, local_file)
    monkeypatch.setattr(torchvision_cnn, "reachable", lambda *host: pytest.fail("probed the network, weights cached"))
    x = images(224, n=1)
    with torch.inference_mode():
        expected = source.features[:4](x)
    for pretrained in ("DEFAULT", str(local_file)):
        spec = TorchvisionCNN.resolve("squeezenet1_1", pretrained, False, ["features.3"])
        features = TorchvisionCNN.load(spec, seed=9).features(x, grid_size=1, map_size=None, embedding=True)
        assert_close(features["features.3/global"], expected.mean((2, 3)))
        assert features["embedding"].shape == (1, 1000)  # no fully connected layer: the model's output
    assert spec.identity.startswith("sha256:")


def test_torchvision_random_init_is_seeded_and_announced(logs):
    spec = TorchvisionCNN.resolve("squeezenet1_1", None, True, ["features.3"])
    assert spec.identity == "random-init"
    x = images(224, n=1)
    first, again, other = (TorchvisionCNN.load(spec, seed).features(x, 1, None, False)["features.3/global"]
                           for seed in (3, 3, 4))
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert any(record.levelno == logging.WARNING and "RANDOM-INIT" in record.getMessage() for record in logs.records)


# --- both ---------------------------------------------------------------------------------------------------


def test_preprocessing_records_differ_and_are_json():
    records = {
        "dinov2": resolve_backbone("timm", "vit_small_patch14_dinov2", "lvd142m", False, [1]).preprocess,
        "vit_b16": resolve_backbone("timm", "vit_base_patch16_224", "augreg2_in21k_ft_in1k", False, [1]).preprocess,
        "alexnet": resolve_backbone("torchvision", "alexnet", "DEFAULT", False, ["features.2"]).preprocess,
        "resnet50": resolve_backbone("torchvision", "resnet50", "IMAGENET1K_V2", False, ["layer1"]).preprocess,
    }
    for record in records.values():
        assert json.loads(json.dumps(record)) == record
    assert records["dinov2"]["library"] == "timm" and records["alexnet"]["library"] == "torchvision"
    assert records["dinov2"]["input_size"] == [3, 518, 518] and records["alexnet"]["crop_size"] == 224
    assert records["vit_b16"]["mean"] == [0.5, 0.5, 0.5] != records["dinov2"]["mean"]
    assert records["alexnet"]["resize_size"] == 256 and records["resnet50"]["resize_size"] == 232
    assert len({json.dumps(record, sort_keys=True) for record in records.values()}) == 4


def test_registry_loads_both_libraries():
    for library, model_name, layers in (("timm", "vit_tiny_patch16_224", [1]),
                                        ("torchvision", "squeezenet1_1", ["features.0"])):
        loaded = load_backbone(resolve_backbone(library, model_name, None, True, layers), seed=0)
        assert loaded.spec.library == library and library in backbone_registry.LIBRARIES
        assert loaded.to(torch.device("cpu")) is loaded


@pytest.mark.parametrize("model_name", ["RN50", "convnext_tiny"])
def test_open_clip_cnn_towers_yield_their_stages_in_one_pass(model_name):
    """open_clip's ModifiedResNet (RN50) and timm trunk (ConvNeXt) towers: stages named stage1..4, each stage's
    global vector the average of its map, maps equal to running the stages by hand, the embedding equal to the
    tower's output (CLIP's joint space)."""
    spec = resolve_backbone("open_clip", model_name, None, True, [4, 2])
    assert spec.layers == ("stage2", "stage4") and all(spec.spatial)
    backbone = load_backbone(spec, seed=0)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    features = backbone.features(images, grid_size=2, map_size=64, embedding=True)
    visual = backbone.visual
    with torch.no_grad():
        if model_name == "RN50":
            x = visual.stem(images)
            maps = [x := stage(x) for stage in (visual.layer1, visual.layer2, visual.layer3, visual.layer4)]
        else:
            x = visual.trunk.stem(images)
            maps = [x := stage(x) for stage in visual.trunk.stages]
        expected_embedding = visual(images)
    for stage in (2, 4):
        by_hand = maps[stage - 1]
        np.testing.assert_allclose(features[f"stage{stage}/map"].numpy(), by_hand.permute(0, 2, 3, 1).numpy(),
                                   atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(features[f"stage{stage}/global"].numpy(), by_hand.mean((2, 3)).numpy(),
                                   atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(features["embedding"].numpy(), expected_embedding.numpy(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"stage indices in 1..4 \(integers\), got \[5\]"):
        resolve_backbone("open_clip", model_name, None, True, [5])
