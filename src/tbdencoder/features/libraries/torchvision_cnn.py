"""torchvision classification models (library `torchvision`): AlexNet, ResNet-50 and any other model of
`torchvision.models.list_models(module=torchvision.models)`; offline-first weights; the weights' own
preprocessing.

Weights (`pretrained`): a torchvision weights name of the model (`IMAGENET1K_V1`, or `DEFAULT`, recorded as
the name it stands for), or a local state_dict file (.pth / .safetensors); null with `random_init: true` for
a random-init network. Preprocessing follows the weights' `transforms()` (resize, centre crop, normalise);
a local file or a random-init network takes the model's DEFAULT weights' preprocessing.

Layers are graph nodes of `torchvision.models.feature_extraction.get_graph_node_names(model)` (eval) or a
module path above them, which stands for the module's last node: AlexNet `features.2` ... `features.12`,
`classifier.2`, `classifier.5`, `classifier.6` (the Algonauts 2023 tutorial's layers), ResNet-50 `layer1` ...
`layer4`, `avgpool`, `fc`. A layer whose output is a (C, H, W) map larger than 1 x 1 is spatial: `global` is
its global average pool, with `grid` and `map`; any other output (a fully connected layer's (C,), ResNet's
1 x 1 `avgpool`) gives only `global`, flattened. In-place activations are switched off so that a layer's output
is not overwritten by a following in-place ReLU (AlexNet `features.0`, `classifier.1`).

The `embedding` is the pre-logits feature: the input of the model's last fully connected layer (AlexNet the
4096-d input of `classifier.6`, ResNet-50 the 2048-d flattened `avgpool`), like timm's pre-logits and open_clip's
image embedding rather than the 1000 ImageNet logits (ask for layer `classifier.6` / `fc` for those); a model
without a fully connected layer (SqueezeNet) gives its output.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
from torchvision.transforms import InterpolationMode
from torchvision.transforms._presets import ImageClassification

from tbdencoder.features.backbone_registry import (
    BackboneSpec,
    WeightsUnavailableError,
    pooled_tokens,
    reachable,
    reading_weights,
    register_library,
)
from tbdencoder.features.layer_names import check_module_paths, check_weights_choice, spatial_flags
from tbdencoder.io import file_sha256, get_logger

log = get_logger("features.torchvision")


@register_library("torchvision")
class TorchvisionCNN:
    """A torchvision classification model, its preprocessing and its layer features (one pass)."""

    def __init__(self, spec: BackboneSpec, model: nn.Module):
        self.spec = spec
        self.model = model
        self.transform = image_transform(spec.preprocess)
        self.embedding_module = last_linear(model)
        self._extractors: dict[bool, nn.Module] = {}  # by whether the embedding is asked for
        self._output_node = None if self.embedding_module else get_graph_node_names(model)[1][-1]

    @staticmethod
    def resolve(model_name: str, pretrained: str | None, random_init: bool, layers: list) -> BackboneSpec:
        """Check the model, weights and layers and derive the preprocessing (no download; a meta-device model)."""
        _check_model_name(model_name)
        enum = torchvision.models.get_model_weights(model_name)
        name = check_weights_choice("torchvision", model_name, pretrained, random_init, list(enum.__members__),
                                    prefix=f"{enum.__name__}.")  # `AlexNet_Weights.IMAGENET1K_V1` works too
        weights = enum[name] if name else None
        model = meta_model(model_name)
        preprocess = _preprocess_record(weights or enum.DEFAULT)
        names = tuple(check_module_paths(model_name, layers, get_graph_node_names(model)[1][1:]))
        if random_init:
            identity = "random-init"
        elif weights is not None:
            identity = f"weights:{weights.name}"
        else:
            identity = f"sha256:{file_sha256(pretrained)}"
        return BackboneSpec(
            library="torchvision", model_name=model_name, pretrained=weights.name if weights else pretrained,
            random_init=random_init, identity=identity, layers=names,
            spatial=spatial_flags(_output_shapes(model, names, preprocess["crop_size"])), preprocess=preprocess,
            extra={"embedding_module": last_linear(model)},
        )

    @staticmethod
    def layer_table_entry(model_name: str) -> dict:
        """The model's entry in the layer table (features.layer_names): weights names and each graph node's
        per-image output shape at the default weights' crop size."""
        _check_model_name(model_name)
        enum = torchvision.models.get_model_weights(model_name)
        model = meta_model(model_name)
        nodes = get_graph_node_names(model)[1][1:]  # eval graph, without the input placeholder
        return {"weights_enum": enum.__name__, "weights": list(enum.__members__),
                "nodes": _output_shapes(model, nodes, _preprocess_record(enum.DEFAULT)["crop_size"])}

    @staticmethod
    def load(spec: BackboneSpec, seed: int) -> TorchvisionCNN:
        """Build the model with its weights (the torch hub cache or a file first; a download only when reachable)."""
        weights, cached = None, None
        if spec.random_init:
            log.warning("%s: features come from a RANDOM-INIT network (seed %d), not pretrained weights",
                        spec.model_name, seed)
        elif spec.identity.startswith("weights:"):
            weights = torchvision.models.get_model_weights(spec.model_name)[spec.pretrained]
            local = weights_cache_path(weights)
            if local.is_file():
                log.info("%s %s: using cached weights %s", spec.model_name, weights.name, local)
                cached = local
            else:
                host = urlparse(weights.url).hostname
                if not reachable(host, 443):
                    raise WeightsUnavailableError(_unavailable_message(spec, weights, host))
                log.info("%s %s: downloading weights %s", spec.model_name, weights.name, weights.url)
        with torch.random.fork_rng(devices=[]), reading_weights(cached, "torchvision", spec.model_name):
            torch.manual_seed(seed)
            model = torchvision.models.get_model(spec.model_name, weights=weights)
        if not spec.random_init and weights is None:
            log.info("%s: loading weights from %s", spec.model_name, spec.pretrained)
            with reading_weights(spec.pretrained, "torchvision", spec.model_name):
                model.load_state_dict(_read_state_dict(spec.pretrained))
        for module in model.modules():  # a returned node must not be overwritten by a later in-place op
            if getattr(module, "inplace", False):
                module.inplace = False
        return TorchvisionCNN(spec, model.eval().requires_grad_(False))

    def to(self, device: torch.device) -> TorchvisionCNN:
        self.model.to(device, memory_format=torch.channels_last)
        self._extractors.clear()
        return self

    def features(self, images: torch.Tensor, grid_size: int, map_size: int | None,
                 embedding: bool) -> dict[str, torch.Tensor]:
        """One pass through the graph pruned after the deepest layer (or to the end for the embedding)."""
        extractor = self._extractor(embedding)
        captured = []
        hook = (extractor.get_submodule(self.embedding_module).register_forward_pre_hook(
            lambda module, args: captured.append(args[0])) if embedding and self.embedding_module else None)
        try:
            with torch.inference_mode(), torch.autocast(images.device.type, dtype=torch.bfloat16,
                                                        enabled=images.device.type == "cuda"):
                outputs = extractor(images)
        finally:
            if hook is not None:
                hook.remove()
        features = {}
        for name, spatial in zip(self.spec.layers, self.spec.spatial):
            if spatial:
                features.update(pooled_tokens(name, outputs[name], grid_size, map_size))
            else:
                features[f"{name}/global"] = outputs[name].flatten(1).float().cpu()
        if embedding:
            final = captured[0] if self.embedding_module else outputs[self._output_node]
            features["embedding"] = final.flatten(1).float().cpu()
        return features

    def _extractor(self, embedding: bool) -> nn.Module:
        if embedding not in self._extractors:
            nodes = list(self.spec.layers)
            if embedding:
                nodes.append(self.embedding_module or self._output_node)
            unique = list(dict.fromkeys(nodes))
            self._extractors[embedding] = create_feature_extractor(self.model, return_nodes=unique).eval()
        return self._extractors[embedding]


def meta_model(model_name: str) -> nn.Module:
    """The architecture on the meta device, eval mode: no weights, no memory, no download."""
    with torch.device("meta"):
        return torchvision.models.get_model(model_name, weights=None).eval()


def last_linear(model: nn.Module) -> str | None:
    """Module path of the model's last fully connected layer (its classifier), None when it has none."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return names[-1] if names else None


def weights_cache_path(weights) -> Path:
    """Where torch hub keeps (and torchvision looks for) the file of a weights enum."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def image_transform(preprocess: dict) -> ImageClassification:
    """PIL image (or uint8 tensor) -> normalised (3, crop, crop) float tensor, as the record says."""
    return ImageClassification(
        crop_size=preprocess["crop_size"], resize_size=preprocess["resize_size"], mean=preprocess["mean"],
        std=preprocess["std"], interpolation=InterpolationMode(preprocess["interpolation"]),
        antialias=preprocess["antialias"],
    )


def _preprocess_record(weights) -> dict:
    """The weights' inference preprocessing, JSON-able."""
    preset = weights.transforms()
    if not isinstance(preset, ImageClassification):
        raise ValueError(f"{weights}: expected ImageClassification preprocessing, got {type(preset).__name__}")
    (crop_size,), (resize_size,) = preset.crop_size, preset.resize_size
    return {"library": "torchvision", "resize_size": resize_size, "crop_size": crop_size,
            "mean": [float(m) for m in preset.mean], "std": [float(s) for s in preset.std],
            "interpolation": preset.interpolation.value, "antialias": bool(preset.antialias)}


def _check_model_name(model_name: str) -> None:
    names = torchvision.models.list_models(module=torchvision.models)
    if model_name not in names:
        close = difflib.get_close_matches(model_name, names, n=5, cutoff=0.4)
        raise ValueError(f"unknown torchvision classification model {model_name!r}; did you mean one of {close}? "
                         "(all names: torchvision.models.list_models(module=torchvision.models))")


def _output_shapes(model: nn.Module, names: list[str], crop_size: int) -> dict[str, list[int] | None]:
    """Per graph node or module path: its per-image output shape (None when not a tensor), from a forward pass
    of shapes on the meta device."""
    outputs = create_feature_extractor(model, return_nodes=list(names)).eval()(
        torch.empty(1, 3, crop_size, crop_size, device="meta"))
    return {name: list(outputs[name].shape[1:]) if isinstance(outputs[name], torch.Tensor) else None
            for name in names}


def _read_state_dict(path: str) -> dict:
    """A state_dict from a .safetensors or torch file (unwrapped from {'state_dict': ...} / {'model': ...})."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            return state[key]
    return state


def _unavailable_message(spec: BackboneSpec, weights, host: str) -> str:
    local = weights_cache_path(weights)
    return (
        f"pretrained weights for torchvision model {spec.model_name!r} ({type(weights).__name__}.{weights.name}) "
        f"are not in the torch hub cache ({local}) and {host}:443 is unreachable. Provide them in one of these ways:\n"
        f"  1. on a machine with network access download {weights.url} (or run this step once with network) and "
        f"copy the file to {local} (TORCH_HOME sets the torch hub root);\n"
        "  2. set `pretrained:` in params.yaml to the path of a local state_dict file (.pth / .safetensors) for "
        "this architecture;\n"
        "  3. set `random_init: true` (with `pretrained: null`) for a smoke test on a random-init network."
    )
