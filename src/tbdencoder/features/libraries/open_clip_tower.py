"""open_clip vision towers (library `open_clip`): any model name and pretrained tag it lists, or a local
checkpoint; offline-first weight resolution; open_clip's own preprocessing.

Towers and their layers (1-based indices in params):
- VisionTransformer (ViT-B-32, ViT-L-14, ...): transformer blocks, named `block06`; a block's `global`
  token is its class token;
- ModifiedResNet (RN50, RN101, RN50x4, ...): its four stages `layer1`..`layer4`, named `stage1`..`stage4`;
- timm trunks (convnext_base, convnext_large_d, ...): the trunk's stages, named `stage1`, ...;
  a CNN stage's `global` token is the average of its map.
The `embedding` is the tower's output: the image embedding in the joint image-text space (after the
attention pool / head and projection), what contrastive alignment to CLIP needs.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import open_clip
import timm
import torch
from huggingface_hub import try_to_load_from_cache
from open_clip.constants import HF_WEIGHTS_NAME
from open_clip.pretrained import _get_safe_alternatives  # open_clip's own .safetensors preference
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

from tbdencoder.features.backbone_registry import (HF_HOST, NETWORK_TIMEOUT_S, BackboneSpec, WeightsUnavailableError,
                                                   reading_weights)
from tbdencoder.features.backbone_registry import pooled_tokens, reachable, register_library, vit_layer_name
from tbdencoder.features.layer_names import check_blocks, check_weights_choice
from tbdencoder.io import file_sha256, get_logger

log = get_logger("features.open_clip")

OPENAI_URL_CACHE = Path("~/.cache/clip")  # where open_clip stores weights fetched by URL


@dataclass(frozen=True)
class Preprocess:
    """open_clip's inference preprocessing: resize, centre crop, normalise."""

    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    resize_mode: str

    @classmethod
    def from_open_clip(cls, cfg: dict) -> Preprocess:
        size = cfg["size"]
        return cls(
            image_size=(size, size) if isinstance(size, int) else tuple(size),
            mean=tuple(float(m) for m in cfg["mean"]),
            std=tuple(float(s) for s in cfg["std"]),
            interpolation=cfg["interpolation"],
            resize_mode=cfg["resize_mode"],
        )

    def open_clip_cfg(self) -> dict:
        return {**asdict(self), "size": self.image_size}

    def transform(self):
        """PIL image -> normalised (3, H, W) float tensor."""
        return image_transform_v2(
            PreprocessCfg(
                size=self.image_size,
                mean=self.mean,
                std=self.std,
                interpolation=self.interpolation,
                resize_mode=self.resize_mode,
            ),
            is_train=False,
        )


@register_library("open_clip")
class OpenClipTower:
    """The vision tower of an open_clip model, its preprocessing and its layer features (one pass)."""

    def __init__(self, spec: BackboneSpec, visual: torch.nn.Module, preprocess: Preprocess):
        self.spec = spec
        self.visual = visual
        self.transform = preprocess.transform()

    @staticmethod
    def resolve(model_name: str, pretrained: str | None, random_init: bool, layers: list) -> BackboneSpec:
        """Check the model, weights and layers and derive the preprocessing (no network, no model building)."""
        vision_cfg = _vision_cfg(model_name)
        tag = check_weights_choice("open_clip", model_name, pretrained, random_init,
                                   open_clip.list_pretrained_tags_by_model(model_name))
        tag_cfg = open_clip.get_pretrained_cfg(model_name, tag) if tag else {}
        if random_init:
            identity = "random-init"
        elif tag_cfg:
            identity = f"tag:{pretrained}"
        else:
            identity = f"sha256:{file_sha256(pretrained)}"
        preprocess_cfg = merge_preprocess_dict(PreprocessCfg(), tag_cfg)
        preprocess_cfg["size"] = vision_cfg["image_size"]
        kind = _tower_kind(vision_cfg)
        blocks = check_blocks(model_name, layers, _tower_depth(kind, vision_cfg),
                              "transformer block" if kind == "vit" else "stage")
        names = [vit_layer_name(b) if kind == "vit" else f"stage{b}" for b in blocks]
        # forward_intermediates' indices: ViT blocks and timm stages from 0, ModifiedResNet's 0 is its stem
        indices = [b if kind == "resnet" else b - 1 for b in blocks]
        return BackboneSpec(
            library="open_clip", model_name=model_name, pretrained=pretrained, random_init=random_init,
            identity=identity, layers=tuple(names), spatial=(True,) * len(blocks),
            preprocess={"library": "open_clip", **asdict(Preprocess.from_open_clip(preprocess_cfg))},
            extra={"tag_cfg": tag_cfg, "blocks": blocks, "indices": indices, "kind": kind},
        )

    @staticmethod
    def layer_table_entry(model_name: str) -> dict:
        """The model's entry in the layer table (features.layer_names): tower kind, depth, pretrained tags."""
        vision_cfg = _vision_cfg(model_name)
        kind = _tower_kind(vision_cfg)
        return {"kind": kind, "depth": _tower_depth(kind, vision_cfg),
                "tags": open_clip.list_pretrained_tags_by_model(model_name)}

    @staticmethod
    def load(spec: BackboneSpec, seed: int) -> "OpenClipTower":
        """Build the model, keep only its vision tower (eval mode), with its preprocessing checked against the spec's."""
        tag_cfg = spec.extra["tag_cfg"]
        if spec.random_init:
            log.warning("%s: features come from a RANDOM-INIT network (seed %d), not pretrained weights",
                        spec.model_name, seed)
            checkpoint = None
        elif tag_cfg:
            checkpoint = tag_checkpoint(spec)
        else:
            checkpoint = spec.pretrained
        expected = Preprocess(**{k: v for k, v in spec.preprocess.items() if k != "library"})
        with torch.random.fork_rng(devices=[]), reading_weights(checkpoint, "open_clip", spec.model_name):
            torch.manual_seed(seed)
            model = open_clip.create_model(
                spec.model_name,
                pretrained=checkpoint,
                # the tag's weights were trained with QuickGELU: build the matching activation
                force_quick_gelu=tag_cfg.get("quick_gelu", False),
                force_preprocess_cfg=expected.open_clip_cfg(),
                pretrained_image=False,
                pretrained_text=False,
            )
        visual = model.visual.eval()
        preprocess = Preprocess.from_open_clip(visual.preprocess_cfg)
        if preprocess != expected:
            raise RuntimeError(f"open_clip preprocessing {preprocess} differs from the cache key's {expected}")
        return OpenClipTower(spec, visual, preprocess)

    def to(self, device: torch.device) -> "OpenClipTower":
        self.visual.to(device, memory_format=torch.channels_last)
        return self

    def features(self, images: torch.Tensor, grid_size: int, map_size: int | None,
                 embedding: bool) -> dict[str, torch.Tensor]:
        """One pass (stopping after the deepest block unless the embedding is asked for)."""
        vit = self.spec.extra["kind"] == "vit"
        with torch.inference_mode(), torch.autocast(images.device.type, dtype=torch.bfloat16,
                                                    enabled=images.device.type == "cuda"):
            out = self.visual.forward_intermediates(
                images.to(memory_format=torch.channels_last),
                indices=self.spec.extra["indices"],
                stop_early=not embedding,  # blocks after the deepest requested one never run
                intermediates_only=not embedding,
                output_fmt="NCHW",
                output_extra_tokens=vit,
            )
        prefixes = out["image_intermediates_prefix"] if vit else [None] * len(self.spec.layers)
        features = {}
        for name, spatial_map, prefix in zip(self.spec.layers, out["image_intermediates"], prefixes):
            features.update(pooled_tokens(name, spatial_map, grid_size, map_size,
                                          global_vector=None if prefix is None else prefix[:, 0]))
        if embedding:
            features["embedding"] = out["image_features"].float().cpu()
        return features


def tag_checkpoint(spec: BackboneSpec) -> str:
    """Local file of a pretrained tag's weights: the cache first, a download only if the hub is reachable."""
    tag_cfg = spec.extra["tag_cfg"]
    cached = cached_tag_checkpoint(tag_cfg)
    if cached:
        log.info("%s/%s: using cached weights %s", spec.model_name, spec.pretrained, cached)
        return cached
    if not reachable(*HF_HOST, timeout=NETWORK_TIMEOUT_S):
        raise WeightsUnavailableError(_unavailable_message(spec))
    log.info("%s/%s: downloading weights", spec.model_name, spec.pretrained)
    return open_clip.download_pretrained(tag_cfg)


def cached_tag_checkpoint(tag_cfg: dict) -> str | None:
    """Path of the tag's weights if already on disk (HF cache or open_clip's URL cache), else None."""
    if "file" in tag_cfg:
        return tag_cfg["file"]
    if tag_cfg.get("hf_hub"):
        repo_id, filename = os.path.split(tag_cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        for name in [*_get_safe_alternatives(filename), filename]:
            hit = try_to_load_from_cache(repo_id, name)
            if isinstance(hit, str):
                return hit
    elif tag_cfg.get("url"):
        local = OPENAI_URL_CACHE.expanduser() / os.path.basename(tag_cfg["url"])
        if local.is_file():
            return str(local)
    return None


def _vision_cfg(model_name: str) -> dict:
    cfg = open_clip.get_model_config(model_name) if model_name in open_clip.list_models() else None
    if cfg is None:
        close = difflib.get_close_matches(model_name, open_clip.list_models(), n=5, cutoff=0.4)
        raise ValueError(
            f"unknown open_clip model {model_name!r}; did you mean one of {close}? "
            "(all names: open_clip.list_models())"
        )
    return cfg["vision_cfg"]


def _tower_kind(vision_cfg: dict) -> str:
    if vision_cfg.get("timm_model_name"):
        return "timm"
    return "vit" if isinstance(vision_cfg.get("layers"), int) else "resnet"


def _tower_depth(kind: str, vision_cfg: dict) -> int:
    """Blocks of a ViT, stages of a CNN tower (a timm trunk is built on the meta device: no weights)."""
    if kind == "vit":
        return vision_cfg["layers"]
    if kind == "resnet":
        return len(vision_cfg["layers"])
    with torch.device("meta"):
        trunk = timm.create_model(vision_cfg["timm_model_name"], pretrained=False)
    if not hasattr(trunk, "stages") or not hasattr(trunk, "forward_intermediates"):
        raise ValueError(f"timm trunk {vision_cfg['timm_model_name']!r}: only trunks with stages and "
                         "forward_intermediates (ConvNeXt, ...) are supported")
    return len(trunk.stages)


def _unavailable_message(spec: BackboneSpec) -> str:
    tag_cfg = spec.extra["tag_cfg"]
    repo = os.path.split(tag_cfg.get("hf_hub", ""))[0] or tag_cfg.get("url", "")
    return (
        f"pretrained weights for model {spec.model_name!r}, tag {spec.pretrained!r} are not in the local cache "
        f"and {HF_HOST[0]}:{HF_HOST[1]} is unreachable. Provide them in one of these ways:\n"
        f"  1. on a machine with network access run `huggingface-cli download {repo}` (or run this step once "
        "with network) and make that Hugging Face cache (HF_HOME / HF_HUB_CACHE) available here;\n"
        "  2. set `pretrained:` in params.yaml to the path of a local checkpoint file;\n"
        "  3. set `random_init: true` (with `pretrained: null`) for a smoke test on a random-init network."
    )
