"""The layer table (features.layer_names): equal to the installed libraries' networks (meta device, no weights),
raising what `resolve` raises, and params validation with it imports no torch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tbdencoder.features import layer_names
from tbdencoder.features.backbone_registry import layer_table_entry, resolve_backbone
from tbdencoder.features.layer_names import check_backbone, load_table

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("library, model_name",
                         [(library, model) for library, models in load_table().items() for model in models])
def test_table_matches_the_network(library, model_name):
    """On a mismatch (a library upgrade), rebuild the table: python -m tbdencoder.features.layer_names"""
    stored, built = load_table()[library][model_name], layer_table_entry(library, model_name)
    assert built == stored
    assert list(built.get("nodes", ())) == list(stored.get("nodes", ()))  # forward order


def test_table_file_is_as_written(tmp_path, monkeypatch):
    committed = layer_names.TABLE_PATH.read_text()
    monkeypatch.setattr(layer_names, "TABLE_PATH", tmp_path / "layer_names.json")
    layer_names.write_table(load_table())
    assert layer_names.TABLE_PATH.read_text() == committed


@pytest.mark.parametrize("library, model_name, pretrained, layers", [
    ("open_clip", "ViT-B-32", None, [3, 6, 9, 12, 13]),
    ("open_clip", "RN50", None, [5]),
    ("open_clip", "convnext_base", None, [0, 4]),
    ("open_clip", "ViT-B-32", "nope", [3]),
    ("open_clip", "ViT-B-32", "LAION2B-S34B-B79K", [3]),
    ("timm", "vit_small_patch14_reg4_dinov2", None, [0, 6]),
    ("timm", "vit_small_patch14_dinov2", None, ["block06"]),
    ("timm", "vit_small_patch14_dinov2", None, []),
    ("timm", "vit_small_patch14_dinov2", "nope", [1]),
    ("timm", "vit_giant_patch14_dinov2", "default", [40]),
    ("torchvision", "alexnet", None, ["features.2", "features.99"]),
    ("torchvision", "alexnet", None, [3]),
    ("torchvision", "resnet50", None, ["layer4", "layer1.0.relu", "layer5"]),
    ("torchvision", "resnet50", "IMAGENET1K_V2", ["fc", "layer1.0.relu", "avgpool"]),
    ("torchvision", "vit_b_16", None, ["encoder"]),
    ("torchvision", "vit_b_16", None, ["getattr"]),
    ("torchvision", "alexnet", "IMAGENET1K_V9", ["features.2"]),
    ("torchvision", "alexnet", "AlexNet_Weights.IMAGENET1K_V1", ["classifier.5", "features"]),
])
def test_table_checks_raise_what_resolve_raises(library, model_name, pretrained, layers):
    def outcome(check):
        try:
            check(library, model_name, pretrained, pretrained is None, layers)
        except (ValueError, FileNotFoundError) as error:
            return type(error), str(error)
        return None

    assert outcome(check_backbone) == outcome(resolve_backbone)


def test_a_local_checkpoint_must_exist(tmp_path):
    checkpoint = tmp_path / "dinov2.pth"
    with pytest.raises(FileNotFoundError, match=r"dinov2.pth' is neither a timm tag .* nor a local file"):
        check_backbone("timm", "vit_small_patch14_dinov2", str(checkpoint), False, [12])
    checkpoint.write_bytes(b"not read at validation")
    check_backbone("timm", "vit_small_patch14_dinov2", str(checkpoint), False, [12])


def test_a_model_missing_from_the_table_says_how_to_add_it():
    with pytest.raises(ValueError, match=r"unknown timm model 'vit_small_patch14_dinov3'; did you mean one of "
                                         r"\['vit_small_patch14_dinov2'.*`python -m tbdencoder.features.layer_names "
                                         r"--add timm vit_small_patch14_dinov3`"):
        check_backbone("timm", "vit_small_patch14_dinov3", None, True, [1])


def test_params_validation_imports_no_torch():
    code = ("import sys, yaml; from tbdencoder.config import validate_params; "
            "validate_params(yaml.safe_load(open(sys.argv[1]))); "
            "print(sorted({'torch', 'timm', 'torchvision', 'open_clip'} & set(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "params.yaml")], env=env, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"
