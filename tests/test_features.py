"""Feature extraction on a tiny random-init open_clip ViT (no network, no pretrained weights)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import huggingface_hub.constants
import numpy as np
import open_clip
import open_clip.pretrained
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from tbdencoder.features import WeightsUnavailableError, extract_features, load_backbone, resolve_backbone
from tbdencoder.features import backbone_registry, extract
from tbdencoder.features.libraries import open_clip_tower

TINY = "tbd-test-tiny-vit"
TINY_CFG = {  # 32 px images, 8 px patches -> a 4 x 4 patch grid; 3 blocks of width 32
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
UNROUTABLE = ("192.0.2.1", 443)  # TEST-NET-1: never answers


@pytest.fixture(scope="session", autouse=True)
def tiny_model(tmp_path_factory) -> Path:
    """Register the tiny model with open_clip; returns its config file."""
    config = tmp_path_factory.mktemp("model_configs") / f"{TINY}.json"
    config.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(config)
    return config


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Empty weight caches and an unreachable hub, whatever machine runs the tests."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(open_clip_tower, "OPENAI_URL_CACHE", tmp_path / "clip_cache")
    monkeypatch.setattr(open_clip_tower, "HF_HOST", UNROUTABLE)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 40, 48, 3), dtype=np.uint8)


def write_pixels(path: Path, pixels: np.ndarray, hashes: list[str] | None = None) -> Path:
    with h5py.File(path, "w") as h5:
        h5["stimulus_id"] = np.array([f"stim{i}" for i in range(len(pixels))], dtype=object)
        h5["content_hash"] = np.array(hashes or [hashlib.sha256(p.tobytes()).hexdigest() for p in pixels], dtype=object)
        h5["pixels"] = pixels
    return path


def write_paths(path: Path, image_paths: list[str], hashes: list[str]) -> Path:
    with h5py.File(path, "w") as h5:
        h5["stimulus_id"] = np.array([f"stim{i}" for i in range(len(image_paths))], dtype=object)
        h5["content_hash"] = np.array(hashes, dtype=object)
        h5["path"] = np.array(image_paths, dtype=object)
    return path


def run(stimuli: Path, out: Path, cache_dir: Path, **overrides) -> Path:
    kwargs = dict(model_name=TINY, pretrained=None, random_init=True, layers=[1, 3], grid_size=2, batch_size=2,
                  seed=0, cache_dir=cache_dir)
    return extract_features(stimuli, out, **{**kwargs, **overrides})


def read(path: Path) -> tuple[dict, dict]:
    """All datasets and attrs of an HDF5 file."""
    data = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: data.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return data, {key: value for key, value in h5.attrs.items()}


def assert_same_file(a: Path, b: Path) -> None:
    (data_a, attrs_a), (data_b, attrs_b) = read(a), read(b)
    assert data_a.keys() == data_b.keys()
    for name in data_a:
        np.testing.assert_array_equal(data_a[name], data_b[name], err_msg=name)
    assert attrs_a.keys() == attrs_b.keys()
    for name in attrs_a:
        np.testing.assert_array_equal(attrs_a[name], attrs_b[name], err_msg=name)


def hook_backbone(monkeypatch, hooks: dict) -> None:
    """Make extraction's backbone call each `hook(module, inputs, output)` on its named submodule."""

    def load(spec, seed):
        backbone = load_backbone(spec, seed)
        for name, hook in hooks.items():
            backbone.visual.get_submodule(name).register_forward_hook(hook)
        return backbone

    monkeypatch.setattr(extract, "load_backbone", load)


def row_counter() -> tuple[list[int], callable]:
    """A hook recording batch sizes, and the list it appends to."""
    seen = []
    return seen, lambda module, inputs, output: seen.append(inputs[0].shape[0])


def manual_tokens(visual, image: torch.Tensor, layer: int) -> torch.Tensor:
    """Residual stream after `layer` blocks, computed step by step."""
    x = visual.conv1(image).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    assert visual.transformer.batch_first
    for block in visual.transformer.resblocks[:layer]:
        x = block(x)
    return x


def test_shapes_attrs_and_manual_features(tmp_path):
    pixels = images(5)
    out = run(write_pixels(tmp_path / "stimuli.h5", pixels), tmp_path / "features.h5", tmp_path / "cache")
    data, attrs = read(out)

    assert data["layers/block01/global"].shape == (5, 32) and data["layers/block01/global"].dtype == np.float32
    assert data["layers/block03/grid"].shape == (5, 2 * 2 * 32)
    assert list(data["stimulus_id"].astype(str)) == [f"stim{i}" for i in range(5)]
    assert "done" not in data
    assert attrs["library"] == "open_clip" and attrs["model_name"] == TINY and attrs["pretrained"] == ""
    assert attrs["random_init"] and list(attrs["layers"]) == ["block01", "block03"] and attrs["grid_size"] == 2
    preprocess = json.loads(attrs["preprocess"])
    assert preprocess["image_size"] == [32, 32] and preprocess["interpolation"] == "bicubic"
    assert preprocess["library"] == "open_clip" and preprocess["mean"] == list(open_clip.OPENAI_DATASET_MEAN)
    assert json.loads(attrs["library_versions"])["torch"] == str(torch.__version__)
    assert attrs["stimuli_hash"] and (tmp_path / "cache" / f"{attrs['cache_key']}.h5").exists()
    assert tuple(h5py.File(out)["layers/block03/grid"].attrs["shape"]) == (2, 2, 32)

    visual = load_backbone(resolve_backbone("open_clip", TINY, None, True, [1, 3]), seed=0).visual
    preprocess = T.Compose([
        T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32), T.ToTensor(),
        T.Normalize(open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD),
    ])
    with torch.no_grad():
        for row in (0, 4):
            image = preprocess(Image.fromarray(pixels[row]))[None]
            for layer in (1, 3):
                tokens = manual_tokens(visual, image, layer)[0]
                patches = tokens[1:].reshape(2, 2, 2, 2, 32)  # (grid row, row in cell, grid col, col in cell, ch)
                grid = patches.mean(dim=(1, 3)).flatten()
                np.testing.assert_allclose(data[f"layers/block{layer:02d}/grid"][row], grid.numpy(), atol=1e-5)
                np.testing.assert_allclose(data[f"layers/block{layer:02d}/global"][row], tokens[0].numpy(), atol=1e-5)


def test_cache_hit_does_no_model_work(tmp_path, monkeypatch):
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(3))
    first = run(stimuli, tmp_path / "a.h5", tmp_path / "cache")

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded despite a cache hit")

    monkeypatch.setattr(extract, "load_backbone", fail)
    second = run(stimuli, tmp_path / "b.h5", tmp_path / "cache")
    assert_same_file(first, second)
    assert not list((tmp_path / "cache").glob("*.partial.h5"))


def test_duplicates_computed_once_and_deeper_blocks_skipped(tmp_path, monkeypatch):
    pixels = images(3)[[0, 1, 0, 2, 1]]
    seen, count = row_counter()

    def never(module, inputs, output):
        raise AssertionError("a block deeper than the deepest requested layer ran")

    hook_backbone(monkeypatch, {"conv1": count, "transformer.resblocks.2": never})
    data, _ = read(run(write_pixels(tmp_path / "stimuli.h5", pixels), tmp_path / "f.h5", tmp_path / "cache",
                       layers=[1, 2]))
    assert sum(seen) == 3
    for name in ("layers/block02/global", "layers/block01/grid"):
        np.testing.assert_array_equal(data[name][0], data[name][2])
        np.testing.assert_array_equal(data[name][1], data[name][4])
        assert not np.array_equal(data[name][0], data[name][1])


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, monkeypatch):
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(7))
    reference = run(stimuli, tmp_path / "reference.h5", tmp_path / "reference_cache")

    batches = []

    def kill_in_second_batch(module, inputs, output):
        batches.append(inputs[0].shape[0])
        if len(batches) == 2:
            raise KeyboardInterrupt("simulated kill")

    hook_backbone(monkeypatch, {"conv1": kill_in_second_batch})
    with pytest.raises(KeyboardInterrupt):
        run(stimuli, tmp_path / "resumed.h5", tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.partial.h5"))) == 1
    assert not (tmp_path / "resumed.h5").exists()

    seen, count = row_counter()
    hook_backbone(monkeypatch, {"conv1": count})
    resumed = run(stimuli, tmp_path / "resumed.h5", tmp_path / "cache")
    assert sum(seen) == 7 - 2  # the first batch of 2 was kept
    assert not list((tmp_path / "cache").glob("*.partial.h5"))
    assert_same_file(reference, resumed)


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU"))])
def test_batches_run_in_inference_mode_channels_last_and_bf16_on_gpu(tmp_path, monkeypatch, device):
    seen = []

    def record(module, inputs, output):
        seen.append({
            "rows": inputs[0].shape[0],
            "channels_last": inputs[0].is_contiguous(memory_format=torch.channels_last),
            "weights_channels_last": module.weight.is_contiguous(memory_format=torch.channels_last),
            "inference_mode": torch.is_inference_mode_enabled(),
            "autocast": torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device),
        })

    hook_backbone(monkeypatch, {"conv1": record})
    run(write_pixels(tmp_path / "stimuli.h5", images(5)), tmp_path / "f.h5", tmp_path / "cache", batch_size=4,
        device=device)
    assert [batch["rows"] for batch in seen] == [4, 1]
    first = seen[0]  # the 4-row batch: a 1-row one is contiguous in both layouts
    assert first["channels_last"] and first["weights_channels_last"] and first["inference_mode"]
    assert first["autocast"] == (torch.bfloat16 if device == "cuda" else False)


KILLABLE_EXTRACTION = """
import logging, sys, threading
import open_clip
from tbdencoder.features import extract

class HoldAtCheckpoint(logging.Handler):  # runs after the stderr handler: hold still until the parent's SIGKILL
    def emit(self, record):
        if record.getMessage().startswith("checkpoint:"):
            threading.Event().wait()

config, model_name, stimuli, out, cache_dir = sys.argv[1:]
open_clip.add_model_config(config)
logging.getLogger("tbdencoder").addHandler(HoldAtCheckpoint())
extract.extract_features(stimuli, out, model_name=model_name, pretrained=None, random_init=True, layers=[1, 3],
                         grid_size=2, batch_size=2, seed=0, cache_dir=cache_dir)
"""


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, monkeypatch, tiny_model):
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(9))
    reference = run(stimuli, tmp_path / "reference.h5", tmp_path / "reference_cache")
    cache = tmp_path / "cache"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_EXTRACTION, str(tiny_model), TINY, str(stimuli), str(tmp_path / "resumed.h5"),
         str(cache)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines, checkpoint = [], None
    for line in child.stderr:  # text mode also splits tqdm's carriage returns
        lines.append(line)
        checkpoint = re.search(r"checkpoint: (\d+) of 9 rows written to (.*\.partial\.h5)$", line)
        if checkpoint:
            child.kill()  # SIGKILL: no exception handler, no file closing
            break
    child.communicate(timeout=60)
    assert checkpoint, "".join(lines)
    assert child.returncode == -signal.SIGKILL
    partial = Path(checkpoint[2])
    assert list(cache.glob("*.partial.h5")) == [partial]
    with h5py.File(partial, "r") as h5:
        assert h5["done"][:].sum() == int(checkpoint[1]) == 2  # the first batch
    assert not (tmp_path / "resumed.h5").exists()

    seen, count = row_counter()
    hook_backbone(monkeypatch, {"conv1": count})
    resumed = run(stimuli, tmp_path / "resumed.h5", cache)
    assert sum(seen) == 9 - 2  # only the rows missing at the checkpoint were computed
    assert not list(cache.glob("*.partial.h5"))
    assert_same_file(reference, resumed)


def test_unusable_partial_file_is_discarded(tmp_path):
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(3))
    reference = run(stimuli, tmp_path / "reference.h5", tmp_path / "cache")
    final = tmp_path / "cache" / f"{read(reference)[1]['cache_key']}.h5"
    final.unlink()
    final.with_name(f"{final.stem}.partial.h5").write_bytes(b"not an HDF5 file")
    assert_same_file(reference, run(stimuli, tmp_path / "again.h5", tmp_path / "cache"))


def test_random_init_reproducible_per_seed(tmp_path):
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(2))
    a, _ = read(run(stimuli, tmp_path / "a.h5", tmp_path / "cache_a", seed=3))
    b, _ = read(run(stimuli, tmp_path / "b.h5", tmp_path / "cache_b", seed=3))
    c, _ = read(run(stimuli, tmp_path / "c.h5", tmp_path / "cache_c", seed=4))
    np.testing.assert_array_equal(a["layers/block03/grid"], b["layers/block03/grid"])
    assert not np.allclose(a["layers/block03/grid"], c["layers/block03/grid"])


def test_pixels_and_paths_give_identical_features(tmp_path, monkeypatch):
    pixels = images(4)
    hashes = [hashlib.sha256(p.tobytes()).hexdigest() for p in pixels]
    monkeypatch.chdir(tmp_path)
    Path("images").mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(f"images/{i}.png")  # PNG is lossless
    from_paths = write_paths(tmp_path / "paths.h5", [f"images/{i}.png" for i in range(4)], hashes)
    from_pixels = write_pixels(tmp_path / "pixels.h5", pixels, hashes)
    a, _ = read(run(from_paths, tmp_path / "a.h5", tmp_path / "cache_a"))
    b, _ = read(run(from_pixels, tmp_path / "b.h5", tmp_path / "cache_b", num_workers=2))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_cached_tag_loads_offline(tmp_path, monkeypatch):
    """A tag whose weights sit in the HF cache loads without network, like the same checkpoint by path."""
    repo = "tbd-test/tiny-vit"
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY, {"fake": open_clip.pretrained._pcfg(hf_hub=f"{repo}/")})
    snapshot = Path(huggingface_hub.constants.HF_HUB_CACHE) / "models--tbd-test--tiny-vit"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text("abc123")
    checkpoint = snapshot / "snapshots" / "abc123" / "open_clip_pytorch_model.bin"
    checkpoint.parent.mkdir(parents=True)
    torch.manual_seed(5)
    torch.save(open_clip.create_model(TINY).state_dict(), checkpoint)

    stimuli = write_pixels(tmp_path / "stimuli.h5", images(2))
    by_tag, tag_attrs = read(run(stimuli, tmp_path / "tag.h5", tmp_path / "cache",
                                 pretrained="fake", random_init=False))
    by_path, _ = read(run(stimuli, tmp_path / "path.h5", tmp_path / "cache",
                          pretrained=str(checkpoint), random_init=False))
    random, _ = read(run(stimuli, tmp_path / "random.h5", tmp_path / "cache", seed=5))
    assert tag_attrs["pretrained"] == "fake" and not tag_attrs["random_init"]
    for name in by_tag:
        np.testing.assert_array_equal(by_tag[name], by_path[name], err_msg=name)
        np.testing.assert_array_equal(by_tag[name], random[name], err_msg=name)


def test_argument_errors(tmp_path):
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(1))
    with pytest.raises(ValueError, match="random_init"):
        run(stimuli, tmp_path / "f.h5", tmp_path / "cache", model_name="ViT-B-32", pretrained="openai")
    with pytest.raises(ValueError, match="no weights chosen"):
        run(stimuli, tmp_path / "f.h5", tmp_path / "cache", random_init=False)
    with pytest.raises(ValueError, match="ViT-B-32"):
        run(stimuli, tmp_path / "f.h5", tmp_path / "cache", model_name="ViT-B-32x")
    with pytest.raises(ValueError, match="layers"):
        run(stimuli, tmp_path / "f.h5", tmp_path / "cache", layers=[4])
    missing = tmp_path / "missing_checkpoint.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        run(stimuli, tmp_path / "f.h5", tmp_path / "cache", pretrained=str(missing), random_init=False)


def test_uncached_tag_fails_fast_with_guidance(tmp_path, monkeypatch):
    """The hub probe gives up after NETWORK_TIMEOUT_S even if the connection attempt never returns."""
    calls, entered, release, returned = [], threading.Event(), threading.Event(), []

    def blackhole(address, timeout):  # a connection (or name lookup) that hangs until the test ends
        calls.append((address, timeout))
        entered.set()
        release.wait(60)
        returned.append(True)
        raise TimeoutError("timed out")

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(backbone_registry.socket, "create_connection", blackhole)
    monkeypatch.setattr(open_clip_tower, "NETWORK_TIMEOUT_S", 0.01)
    monkeypatch.setattr(open_clip, "download_pretrained", no_download)
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(1))
    try:
        with pytest.raises(WeightsUnavailableError) as error:
            run(stimuli, tmp_path / "f.h5", tmp_path / "cache", model_name="ViT-B-32", pretrained="laion2b_s34b_b79k",
                random_init=False)
        assert not returned  # the error came while the probe still hung
        assert entered.wait(60) and calls == [(UNROUTABLE, 0.01)]
    finally:
        release.set()
    message = str(error.value)
    assert "ViT-B-32" in message and "laion2b_s34b_b79k" in message
    assert "pretrained:" in message and "random_init: true" in message and "huggingface-cli download" in message


def test_unpooled_maps_and_the_clip_embedding_come_from_the_same_pass(tmp_path):
    """map_size keeps the 4 x 4 patch map (or pools it to the cap); the embedding is the tower's output, the
    image embedding in CLIP's joint space; FeatureSet views give them their shapes back."""
    from tbdencoder.features.featureset import FeatureSet

    pixels = images(3)
    stimuli = write_pixels(tmp_path / "stimuli.h5", pixels)
    full = run(stimuli, tmp_path / "full.h5", tmp_path / "cache", map_size=8, embedding=True)
    capped = run(stimuli, tmp_path / "capped.h5", tmp_path / "cache", map_size=2)
    data, attrs = read(full)
    assert data["layers/block03/map"].shape == (3, 4 * 4 * 32) and data["embedding"].shape == (3, 16)
    assert attrs["map_size"] == 8 and attrs["embedding"]
    np.testing.assert_allclose(read(capped)[0]["layers/block03/map"], data["layers/block03/grid"], atol=1e-6)
    visual = load_backbone(resolve_backbone("open_clip", TINY, None, True, [1, 3]), seed=0).visual
    preprocess = open_clip_tower.Preprocess(**{k: v for k, v in json.loads(attrs["preprocess"]).items()
                                             if k != "library"}).transform()
    with torch.no_grad():
        expected = visual(torch.stack([preprocess(Image.fromarray(p)) for p in pixels]))
    np.testing.assert_allclose(data["embedding"], expected.numpy(), atol=1e-5)
    ids = [f"stim{i}" for i in range(3)]
    X = FeatureSet.load(full, ids, [3], ["global", "map"], embedding=True)
    assert X.names == ["block03/global", "block03/map", "embedding"]
    assert X.maps()["block03/map"].shape == (3, 4, 4, 32)
    np.testing.assert_array_equal(X.embedding(), data["embedding"])
    tokens = manual_tokens(visual, preprocess(Image.fromarray(pixels[1]))[None], 3)[0, 1:]
    np.testing.assert_allclose(X.maps()["block03/map"][1], tokens.detach().reshape(4, 4, 32).numpy(), atol=1e-5)


def test_the_cache_key_separates_backbones_weights_and_preprocessing(tmp_path):
    stimuli = extract.read_stimuli(write_pixels(tmp_path / "stimuli.h5", images(2)))
    spec = resolve_backbone("open_clip", TINY, None, True, [1, 3])
    key = extract.feature_attrs(spec, stimuli, 2, None, False, 0)["cache_key"]
    other_preprocess = dataclasses.replace(spec, preprocess={**spec.preprocess, "interpolation": "bilinear"})
    other_library = dataclasses.replace(spec, library="timm")
    other_weights = dataclasses.replace(spec, identity="tag:openai")
    keys = {key} | {extract.feature_attrs(s, stimuli, 2, None, False, 0)["cache_key"]
                    for s in (other_preprocess, other_library, other_weights)}
    keys |= {extract.feature_attrs(spec, stimuli, 2, 4, False, 0)["cache_key"],
             extract.feature_attrs(spec, stimuli, 2, None, True, 0)["cache_key"]}
    assert len(keys) == 6
    assert extract.feature_attrs(spec, stimuli, 2, None, False, 0)["cache_key"] == key


def test_maps_stay_on_disk_and_read_as_the_arrays_they_are(tmp_path):
    """FeatureSet.load keeps `map` blocks in the file (DiskRows): stacking subjects' sets and taking rows keep them
    there, reads give the file's values in the asked order, and the fit's sha256 is that of the values."""
    from tbdencoder.features.featureset import DiskRows, FeatureSet
    from tbdencoder.fit.driver import training_sha256
    from tbdencoder.io import write_strings

    rng = np.random.default_rng(0)
    files, values = [], []
    for k in range(2):
        path = tmp_path / f"f{k}.h5"
        ids = [f"s{k}_{i}" for i in range(5)]
        maps, global_ = rng.standard_normal((5, 2 * 2 * 3)).astype(np.float32), rng.standard_normal((5, 3))
        with h5py.File(path, "w") as h5:
            write_strings(h5, "stimulus_id", ids)
            h5["layers/block01/map"] = maps
            h5["layers/block01/map"].attrs["shape"] = [2, 2, 3]
            h5["layers/block01/global"] = global_.astype(np.float32)
        files.append(FeatureSet.load(path, ids[::-1], [1], ["global", "map"]))
        values.append(maps[::-1])
    stacked = FeatureSet.stack(files)
    block = stacked.data[1]
    assert isinstance(block, DiskRows) and block.shape == (10, 12) and len(block.sources) == 2
    expected = np.concatenate(values)
    rows = np.array([7, 0, 7, 3, 9])
    np.testing.assert_array_equal(block[rows], expected[rows])
    taken = stacked.take(rows)
    assert isinstance(taken.data[1], DiskRows)
    np.testing.assert_array_equal(np.asarray(taken.data[1]), expected[rows])
    np.testing.assert_array_equal(stacked.maps()["block01/map"], expected.reshape(10, 2, 2, 3))
    in_memory = FeatureSet(stacked.names, [np.asarray(b) for b in stacked.data], stacked.shapes)
    Y = rng.standard_normal((10, 4))
    assert training_sha256(stacked, Y) == training_sha256(in_memory, Y)
