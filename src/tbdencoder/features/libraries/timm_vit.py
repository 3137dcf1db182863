"""timm VisionTransformers (library `timm`): DINOv2 ViT-S/B/L/g-14 with or without registers
(`vit_small_patch14_dinov2`, `vit_small_patch14_reg4_dinov2`, ...) and any other timm ViT
(`vit_base_patch16_224`, ...); offline-first weight resolution; timm's own preprocessing.

Weights (`pretrained`): a timm pretrained tag of the model (the part after the dot in
`vit_small_patch14_dinov2.lvd142m`, so `lvd142m`), `default` for the model's default tag (recorded as
that tag), or a local weights file (.safetensors / .pth; timm's checkpoint filter also takes e.g. the
original DINOv2 .pth); null with `random_init: true` for a random-init network.

Layers are 1-based transformer blocks (`block06`), all spatial; features are the raw block outputs
(no final norm). A block's `global` token is its class token. Register tokens (DINOv2 `reg4`; the prefix
tokens after the class token) and a distillation token are part of no token: they are dropped, so
`grid` and `map` pool the patch tokens only. A ViT without a class token (global pool `avg`, `map`)
takes the mean of its patch tokens as `global`. The `embedding` is timm's pre-logits feature:
`forward_head(final, pre_logits=True)` (after the final norm and pooling, before any classifier; for
DINOv2 the normed class token), from the same forward pass.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from urllib.parse import urlparse

import timm
import timm.data
import torch
from huggingface_hub import try_to_load_from_cache
from timm.models import get_arch_pretrained_cfgs
from timm.models._hub import HF_WEIGHTS_NAME, _get_safe_alternatives, hf_split  # timm's own file preference
from timm.models.vision_transformer import VisionTransformer

from tbdencoder.features.backbone_registry import (
    HF_HOST,
    BackboneSpec,
    WeightsUnavailableError,
    pooled_tokens,
    reachable,
    reading_weights,
    register_library,
    vit_layer_name,
)
from tbdencoder.features.layer_names import check_blocks, check_weights_choice
from tbdencoder.io import file_sha256, get_logger

log = get_logger("features.timm")

PREPROCESS_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


@register_library("timm")
class TimmViT:
    """A timm VisionTransformer, its preprocessing and its block features (one pass)."""

    def __init__(self, spec: BackboneSpec, model: VisionTransformer):
        self.spec = spec
        self.model = model
        self.transform = timm.data.create_transform(**timm_data_config(spec.preprocess), is_training=False)

    @staticmethod
    def resolve(model_name: str, pretrained: str | None, random_init: bool, layers: list) -> BackboneSpec:
        """Check the model, weights and blocks and derive the preprocessing (no download; a meta-device model)."""
        model = _meta_vit(model_name)
        tag_cfgs = _tag_cfgs(model_name)
        tag = check_weights_choice("timm", model_name, pretrained, random_init, list(tag_cfgs))
        if tag and tag != model.pretrained_cfg.get("tag"):
            model = meta_model(model_name, tag)  # the tag's own data config
        blocks = check_blocks(model_name, layers, len(model.blocks))
        if random_init:
            identity = "random-init"
        elif tag:
            identity = f"tag:{tag}"
        else:
            identity = f"sha256:{file_sha256(pretrained)}"
        return BackboneSpec(
            library="timm", model_name=model_name, pretrained=tag or pretrained, random_init=random_init,
            identity=identity, layers=tuple(vit_layer_name(block) for block in blocks),
            spatial=(True,) * len(blocks), preprocess=_preprocess_record(model),
            extra={"blocks": blocks, "depth": len(model.blocks), "tag_cfg": tag_cfgs[tag] if tag else {}},
        )

    @staticmethod
    def layer_table_entry(model_name: str) -> dict:
        """The model's entry in the layer table (features.layer_names): depth and tags with published weights."""
        return {"depth": len(_meta_vit(model_name).blocks), "tags": list(_tag_cfgs(model_name))}

    @staticmethod
    def load(spec: BackboneSpec, seed: int) -> TimmViT:
        """Build the model with its weights (cache or file first; a download only when the hub is reachable)."""
        tag = spec.pretrained if spec.identity.startswith("tag:") else None
        if spec.random_init:
            log.warning("%s: features come from a RANDOM-INIT network (seed %d), not pretrained weights",
                        spec.model_name, seed)
            kwargs = {"pretrained": False}
        elif tag:
            local = cached_tag_weights(spec.extra["tag_cfg"])
            if local is None:
                host = _weights_host(spec.extra["tag_cfg"])
                if not reachable(*host):
                    raise WeightsUnavailableError(_unavailable_message(spec, host))
                log.info("%s.%s: downloading weights", spec.model_name, tag)
                kwargs = {"pretrained": True}
            else:
                log.info("%s.%s: using cached weights %s", spec.model_name, tag, local)
                kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": local}}
        else:
            log.info("%s: loading weights from %s", spec.model_name, spec.pretrained)
            kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(spec.pretrained)}}
        weights_file = kwargs.get("pretrained_cfg_overlay", {}).get("file")
        with torch.random.fork_rng(devices=[]), reading_weights(weights_file, "timm", spec.model_name):
            torch.manual_seed(seed)
            model = timm.create_model(_timm_name(spec.model_name, tag), **kwargs)
        model.eval().requires_grad_(False)
        preprocess = _preprocess_record(model)
        if preprocess != spec.preprocess:
            raise RuntimeError(f"timm preprocessing {preprocess} differs from the cache key's {spec.preprocess}")
        return TimmViT(spec, model)

    def to(self, device: torch.device) -> TimmViT:
        self.model.to(device)
        return self

    def features(self, images: torch.Tensor, grid_size: int, map_size: int | None,
                 embedding: bool) -> dict[str, torch.Tensor]:
        """One pass (stopping after the deepest block unless the embedding is asked for)."""
        model = self.model
        with torch.inference_mode(), torch.autocast(images.device.type, dtype=torch.bfloat16,
                                                    enabled=images.device.type == "cuda"):
            out = model.forward_intermediates(
                images,
                indices=[block - 1 for block in self.spec.extra["blocks"]],
                return_prefix_tokens=True,
                norm=False,
                stop_early=not embedding,  # blocks after the deepest requested one never run
                output_fmt="NCHW",
                intermediates_only=not embedding,
            )
            final, intermediates = out if embedding else (None, out)
            pre_logits = model.forward_head(final, pre_logits=True) if embedding else None
        features = {}
        for name, intermediate in zip(self.spec.layers, intermediates):
            # (patches, prefix tokens) when the model has prefix tokens: [class token?, registers...]
            patches, prefix = intermediate if isinstance(intermediate, tuple) else (intermediate, None)
            class_token = prefix[:, 0] if model.has_class_token else None  # None: mean of the patch tokens
            features.update(pooled_tokens(name, patches, grid_size, map_size, global_vector=class_token))
        if embedding:
            features["embedding"] = pre_logits.float().cpu()
        return features


def meta_model(model_name: str, tag: str | None) -> VisionTransformer:
    """The architecture on the meta device: no weights, no memory, no download (for depth and data config)."""
    with torch.device("meta"):
        return timm.create_model(_timm_name(model_name, tag), pretrained=False)


def timm_data_config(preprocess: dict) -> dict:
    """`create_transform` arguments from a preprocessing record."""
    cfg = {key: preprocess[key] for key in PREPROCESS_KEYS}
    return {**cfg, "input_size": tuple(cfg["input_size"])}


def cached_tag_weights(tag_cfg: dict) -> str | None:
    """Path of a tag's weights if already on disk (Hugging Face cache or torch hub cache), else None."""
    if tag_cfg.get("hf_hub_id"):
        repo_id, revision = hf_split(tag_cfg["hf_hub_id"])
        filename = tag_cfg.get("hf_hub_filename") or HF_WEIGHTS_NAME
        for name in [*_get_safe_alternatives(filename), filename]:
            hit = try_to_load_from_cache(repo_id, name, revision=revision)
            if isinstance(hit, str):
                return hit
    if tag_cfg.get("url"):
        local = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(tag_cfg["url"]).path)
        if local.is_file():
            return str(local)
    return None


def _timm_name(model_name: str, tag: str | None) -> str:
    return f"{model_name}.{tag}" if tag else model_name


def _preprocess_record(model: VisionTransformer) -> dict:
    """timm's inference data config of the model, JSON-able (lists, not tuples)."""
    cfg = timm.data.resolve_model_data_config(model)
    record = {key: list(cfg[key]) if isinstance(cfg[key], tuple) else cfg[key] for key in PREPROCESS_KEYS}
    return {"library": "timm", **record}


def _meta_vit(model_name: str) -> VisionTransformer:
    """The meta-device model of a timm model name that is a VisionTransformer, else a ValueError."""
    if "." in model_name and timm.is_model(model_name.split(".")[0]):
        raise ValueError(f"timm model {model_name!r}: give the architecture as model name and the tag as "
                         f"pretrained (model {model_name.split('.')[0]!r}, pretrained {model_name.split('.', 1)[1]!r})")
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.4)
        raise ValueError(f"unknown timm model {model_name!r}; did you mean one of {close}? "
                         "(all names: timm.list_models(); DINOv2: timm.list_models('*dinov2*'))")
    model = meta_model(model_name, None)
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"timm model {model_name!r} is a {type(model).__name__}, not a VisionTransformer: library "
                         "timm takes ViTs only (for CNNs use library torchvision)")
    return model


def _tag_cfgs(model_name: str) -> dict[str, dict]:
    """The model's tags with published weights -> their pretrained cfgs, in timm's order (the default first)."""
    return {name.split(".", 1)[1]: cfg.to_dict() for name, cfg in get_arch_pretrained_cfgs(model_name).items()
            if cfg.hf_hub_id or cfg.url or cfg.file}


def _weights_host(tag_cfg: dict) -> tuple[str, int]:
    """Where timm downloads a tag's weights from: the Hugging Face hub, else the tag's URL."""
    if tag_cfg.get("hf_hub_id"):
        return HF_HOST
    return urlparse(tag_cfg["url"]).hostname, 443


def _unavailable_message(spec: BackboneSpec, host: tuple[str, int]) -> str:
    tag_cfg = spec.extra["tag_cfg"]
    if tag_cfg.get("hf_hub_id"):
        repo = hf_split(tag_cfg["hf_hub_id"])[0]
        fetch = (f"on a machine with network access run `hf download {repo}` (or run this step once with "
                 "network) and make that Hugging Face cache (HF_HOME / HF_HUB_CACHE) available here")
    else:
        fetch = (f"download {tag_cfg['url']} on a machine with network access and copy it into "
                 f"{Path(torch.hub.get_dir()) / 'checkpoints'} (TORCH_HOME sets the root)")
    return (
        f"pretrained weights for timm model {spec.model_name!r}, tag {spec.pretrained!r} are not in the local cache "
        f"and {host[0]}:{host[1]} is unreachable. Provide them in one of these ways:\n"
        f"  1. {fetch};\n"
        "  2. set `pretrained:` in params.yaml to the path of a local weights file (.safetensors / .pth) for "
        "this architecture;\n"
        "  3. set `random_init: true` (with `pretrained: null`) for a smoke test on a random-init network."
    )
