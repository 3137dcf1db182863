"""The layer table (layer_names.json): what params validation checks a backbone against, without torch.

Per library and model, what the library's `resolve` reads off the network (meta device, no weights):
- open_clip: the tower `kind` (vit, resnet, timm), its `depth` (blocks or stages) and pretrained `tags`;
- timm: the `depth` (transformer blocks) and the `tags` with published weights, the default first;
- torchvision: the weights enum (`weights_enum`, `weights`) and each graph node's per-image output shape
  (`nodes`, in forward order; null when not a tensor) at the default weights' crop size.

`resolve` and `check_backbone` share the checks below, so both raise the same errors. Add a model, or
rebuild the table from the installed libraries (tests/test_layer_names.py checks it matches them):

    python -m tbdencoder.features.layer_names [--add LIBRARY MODEL]...
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import re
from pathlib import Path

TABLE_PATH = Path(__file__).with_suffix(".json")
REGENERATE = "python -m tbdencoder.features.layer_names"
DEFAULT_TAG = "default"  # timm: `pretrained: default` picks the model's default tag
WEIGHTS_NAME = {"open_clip": "an open_clip tag", "timm": "a timm tag", "torchvision": "a torchvision weights name"}


@functools.cache
def load_table() -> dict[str, dict[str, dict]]:
    return json.loads(TABLE_PATH.read_text())


def check_backbone(library: str, model_name: str, pretrained: str | None, random_init: bool, layers: list) -> None:
    """`resolve_backbone`'s checks of the model, weights choice and layers, against the table."""
    models = load_table()[library]
    if model_name not in models:
        close = difflib.get_close_matches(model_name, list(models), n=5, cutoff=0.4)
        raise ValueError(f"unknown {library} model {model_name!r}; did you mean one of {close}? Params validation "
                         f"knows the models of {TABLE_PATH.name}; add one that {library} has with "
                         f"`{REGENERATE} --add {library} {model_name}`")
    entry = models[model_name]
    if library == "torchvision":
        check_weights_choice(library, model_name, pretrained, random_init, entry["weights"],
                             prefix=f"{entry['weights_enum']}.")
        paths = check_module_paths(model_name, layers, list(entry["nodes"]))
        spatial_flags({path: entry["nodes"][node] for path, node in paths.items()})
    else:
        check_weights_choice(library, model_name, pretrained, random_init, entry["tags"])
        what = "transformer block" if entry.get("kind", "vit") == "vit" else "stage"
        check_blocks(model_name, layers, entry["depth"], what)


def spatial_layers(library: str, model_name: str, layers: list) -> dict:
    """{layer: whether it has a spatial map (grid and map tokens)} of checked layers: every ViT block and CNN
    stage does; a torchvision layer does when its output is a (C, H, W) map larger than 1 x 1."""
    entry = load_table()[library][model_name]
    if library != "torchvision":
        return {layer: True for layer in layers}
    paths = check_module_paths(model_name, layers, list(entry["nodes"]))
    return dict(zip(paths, spatial_flags({path: entry["nodes"][node] for path, node in paths.items()})))


def check_weights_choice(library: str, model_name: str, pretrained: str | None, random_init: bool,
                         names: list[str], prefix: str = "") -> str | None:
    """Validate pretrained / random_init against the library's weights `names` (`prefix` stripped first) ->
    the name chosen (timm's `default` resolved), None for random init or a local file."""
    what = WEIGHTS_NAME[library]
    if random_init:
        if pretrained is not None:
            raise ValueError(f"{model_name}: random_init is true, so pretrained must be null (got {pretrained!r})")
        return None
    if pretrained is None:
        default = f", or {DEFAULT_TAG!r} for the first" if library == "timm" else ""
        raise ValueError(f"{model_name}: no weights chosen. Set pretrained to {what} (for this model: "
                         f"{names}{default}) or to a local weights file, or set random_init: true to use a "
                         "random-init network (smoke tests only).")
    name = pretrained.removeprefix(prefix)
    if library == "open_clip":
        name = name.lower().replace("-", "_")  # open_clip's own tag spelling
    if library == "timm" and name == DEFAULT_TAG:
        if not names:
            raise ValueError(f"{model_name}: timm publishes no pretrained weights for this model; "
                             "give a local weights file or set random_init: true")
        name = names[0]
    if name in names:
        return name
    if not Path(pretrained).is_file():
        raise FileNotFoundError(f"pretrained weights not found: {pretrained!r} is neither {what} of {model_name} "
                                f"({names}) nor a local file")
    return None


def check_blocks(model_name: str, layers: list, depth: int, what: str = "transformer block") -> list[int]:
    """1-based block (or stage) indices, sorted and unique, each in 1..depth."""
    bad = [layer for layer in layers
           if not isinstance(layer, int) or isinstance(layer, bool) or not 1 <= layer <= depth]
    if not layers or bad:
        raise ValueError(f"{model_name}: layers must be {what} indices in 1..{depth} (integers), "
                         f"got {bad or 'none'} in {layers}")
    return sorted(set(layers))


def check_module_paths(model_name: str, layers: list, nodes: list[str]) -> dict[str, str]:
    """torchvision layers: graph nodes or module paths above them -> {layer: the node it returns (a module's
    last node)}, in forward order."""
    last_node = {}  # node or module path -> its last node
    for node in nodes:
        parts = node.split(".")
        for depth in range(1, len(parts) + 1):
            last_node[".".join(parts[:depth])] = node
    bad = [layer for layer in layers if not isinstance(layer, str) or layer not in last_node]
    if not layers or bad:
        close = sorted({match for layer in bad for match in
                        difflib.get_close_matches(str(layer), list(last_node), n=5, cutoff=0.6)})
        raise ValueError(
            f"{model_name}: layers must be graph node names or module paths (strings such as "
            f"{nodes[min(2, len(nodes) - 1)]!r}); unknown: {bad or 'none given'}; close matches: {close} (all "
            "names: torchvision.models.feature_extraction.get_graph_node_names(model)[1])"
        )
    order = {node: index for index, node in enumerate(nodes)}
    return {layer: last_node[layer] for layer in sorted(set(layers), key=lambda layer: order[last_node[layer]])}


def spatial_flags(shapes: dict[str, list[int] | None]) -> tuple[bool, ...]:
    """Per layer, from its per-image output shape: whether it is a (C, H, W) map larger than 1 x 1 (else a
    (C,) vector; anything else is refused)."""
    for name, shape in shapes.items():
        if shape is None or len(shape) not in (1, 3):
            raise ValueError(f"layer {name!r} outputs {'no tensor' if shape is None else f'shape {tuple(shape)}'} "
                             "per image; expected a (C, H, W) map or a (C,) vector (for vision transformers use "
                             "library timm)")
    return tuple(len(shape) == 3 and shape[1] * shape[2] > 1 for shape in shapes.values())


def build_table(models: dict[str, list[str]]) -> dict[str, dict[str, dict]]:
    """The table of these models, from the real networks (imports the libraries)."""
    from tbdencoder.features.backbone_registry import layer_table_entry

    return {library: {name: layer_table_entry(library, name) for name in sorted(set(names))}
            for library, names in sorted(models.items())}


def write_table(table: dict) -> None:
    """The table as JSON, one line per list (tags, shapes)."""
    text = json.dumps(table, indent=1)
    TABLE_PATH.write_text(re.sub(r"\[[^][{}]*\]", lambda m: json.dumps(json.loads(m.group())), text) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild the layer table from the installed libraries "
                                                 "(networks on the meta device, no weights).")
    parser.add_argument("--add", nargs=2, action="append", default=[], metavar=("LIBRARY", "MODEL"),
                        help="also add this model")
    args = parser.parse_args(argv)
    models = {library: list(entries) for library, entries in load_table().items()}
    for library, model_name in args.add:
        models.setdefault(library, []).append(model_name)
    table = build_table(models)
    write_table(table)
    print(f"wrote {sum(map(len, table.values()))} models to {TABLE_PATH}")


if __name__ == "__main__":
    main()
