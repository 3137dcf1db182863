"""Weights that cannot be used are refused with the file's name and what it must be (issue 18): an empty, cut-short,
random or other architecture's checkpoint, for each library; a missing tag offline without a traceback."""

import torch
import timm
import torchvision
import pytest
from safetensors.torch import save_file

from test_backbone_libraries import empty_caches, no_network  # noqa: F401 (fixtures)
from test_features import images, offline, tiny_model, write_pixels, TINY  # noqa: F401 (fixtures)
from tbdencoder.cli import main
from tbdencoder.features.backbone_registry import load_backbone, resolve_backbone
from tbdencoder.features.libraries import torchvision_cnn

# library, model, layers, a state_dict of the right architecture, one of another architecture
MODELS = {
    "open_clip": (TINY, [1], lambda: __import__("open_clip").create_model(TINY).state_dict(),
                  lambda: torchvision.models.get_model("squeezenet1_1").state_dict()),
    "timm": ("vit_tiny_patch16_224", [1], lambda: timm.create_model("vit_tiny_patch16_224").state_dict(),
             lambda: timm.create_model("vit_small_patch16_224").state_dict()),
    "torchvision": ("squeezenet1_1", ["features.3"], lambda: torchvision.models.get_model("squeezenet1_1").state_dict(),
                    lambda: torchvision.models.get_model("squeezenet1_0").state_dict()),
}


def _write(path, kind: str, right, other) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                       dtype=torch.uint8).numpy().tobytes())
    elif kind == "cut short":
        save_file(right(), str(path)) if path.suffix == ".safetensors" else torch.save(right(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # another architecture
        save_file(other(), str(path)) if path.suffix == ".safetensors" else torch.save(other(), path)


@pytest.mark.parametrize("library", sorted(MODELS))
@pytest.mark.parametrize("kind, suffix", [("empty", ".pth"), ("random bytes", ".pth"), ("cut short", ".safetensors"),
                                          ("cut short", ".pth"), ("another architecture", ".safetensors")])
def test_an_unusable_weights_file_is_named_with_what_it_must_be(tmp_path, library, kind, suffix):
    model_name, layers, right, other = MODELS[library]
    path = tmp_path / f"weights{suffix}"
    _write(path, kind, right, other)
    spec = resolve_backbone(library, model_name, str(path), False, layers)
    with pytest.raises(ValueError) as error:
        load_backbone(spec, seed=0)
    assert str(error.value).startswith(f"{path}: not usable as {library} {model_name} weights (")
    assert f"expected the complete state_dict of a {model_name}" in str(error.value)


def test_the_right_weights_file_still_loads(tmp_path):
    model_name, layers, right, _ = MODELS["torchvision"]
    save_file(right(), str(tmp_path / "w.safetensors"))
    load_backbone(resolve_backbone("torchvision", model_name, str(tmp_path / "w.safetensors"), False, layers), seed=0)


def test_missing_weights_offline_are_an_error_line_not_a_traceback(tmp_path, monkeypatch, empty_caches, capsys):
    monkeypatch.setattr(torchvision_cnn, "reachable", lambda *host: False)
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(1))
    settings = ('{"features.backbones.alexnet": {"library": "torchvision", "model": "alexnet", "pretrained": '
                '"IMAGENET1K_V1", "random_init": false, "seed": 0, "layers": ["features.2"], "grid_size": 2, '
                '"batch_size": 2}}')
    assert main(["features", "--stimuli", str(stimuli), "--out", str(tmp_path / "f.h5"), "--cache-dir",
                 str(tmp_path / "cache"), "--device", "cpu", "--settings", settings]) == 1
    error = capsys.readouterr().err
    assert error.startswith("tbdencoder features: error: ") and "Traceback" not in error
    assert "IMAGENET1K_V1" in error and "random_init: true" in error
