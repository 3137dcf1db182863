"""Brain maps: per-vertex values drawn on the inflated fsaverage surface (nilearn), and the measures of a
FactorTopy fit's selectors (seed 003).

- Scores: every model's challenge score per vertex (Pearson r where the data have no noise ceiling).
- The layer colouring (Yang et al. 2024): hue from the most-selected layer (coolwarm, first -> last layer),
  brightness from one minus the normalised entropy of the vertex's layer weights (H / log L): a vertex that
  reads one layer is bright, one that reads all layers alike is black.
- The space selector as retinotopy: eccentricity (image widths from the image centre) and polar angle (degrees,
  counter-clockwise from the right horizontal meridian, upper field positive).
- The scale selector: the global token's share.
- The hierarchy slope (the paper's brain-network alignment measure): each vertex's layer position
  sum_l p_l * l / (L - 1) in [0, 1], regressed by least squares on the vertex's level in the visual hierarchy
  V1 -> V2 -> V3 -> hV4 -> the higher ROIs (levels 0..4 over 4, so a perfect alignment has slope 1).

Vertices are drawn on the mesh their fsaverage indices need (fsaverage5 where every index is below 10,242,
else fsaverage; or the FreeSurfer folder the responses file names); a face is coloured by the mean of its
three vertices, grey where any of them has no value.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tbdencoder.data.cortex import fsaverage_surface, mesh_for  # noqa: E402
from tbdencoder.evaluate.plots import plot_notice, save_figure, suptitle  # noqa: E402

NO_VALUE_RGBA = (0.82, 0.82, 0.82, 1.0)
HIERARCHY_LEVELS = {"V1v": 0, "V1d": 0, "V2v": 1, "V2d": 1, "V3v": 2, "V3d": 2, "hV4": 3}
HIGHER_CLASSES = ("floc-bodies", "floc-faces", "floc-places", "floc-words")
HIGHER_STREAMS = ("ventral", "lateral", "parietal")
NO_FACTORTOPY = "no model in this run has selectors (family factortopy)"


def normalised_entropy(layer_weights: np.ndarray) -> np.ndarray:
    """(V,) H(p) / log L in [0, 1] of each row of layer weights (V, L)."""
    p = np.clip(np.asarray(layer_weights, np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(1) / np.log(max(p.shape[1], 2))


def layer_colours(layer_weights: np.ndarray) -> np.ndarray:
    """(V, 4) RGBA: hue from the most-selected layer, brightness 1 - normalised entropy (module docstring)."""
    n_layers = layer_weights.shape[1]
    rgba = plt.get_cmap("coolwarm")(layer_weights.argmax(1) / max(n_layers - 1, 1))
    rgba[:, :3] *= (1.0 - normalised_entropy(layer_weights))[:, None]
    return rgba


def retinotopy(space_x: np.ndarray, space_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eccentricity in image widths from the centre, polar angle in degrees, upper visual field positive)."""
    dx, dy = np.asarray(space_x) - 0.5, 0.5 - np.asarray(space_y)
    return np.hypot(dx, dy), np.degrees(np.arctan2(dy, dx))


def hierarchy_levels(rois: dict[str, tuple[np.ndarray, dict[int, str]]]) -> np.ndarray:
    """(V,) level 0..4 of each vertex (V1, V2, V3, hV4, higher), NaN outside them; needs prf-visualrois."""
    if "prf-visualrois" not in rois:
        raise KeyError("the hierarchy slope needs the prf-visualrois ROI class (fmri.roi_classes)")
    labels, names = rois["prf-visualrois"]
    levels = np.full(len(labels), np.nan)
    for label, name in names.items():
        if name in HIERARCHY_LEVELS:
            levels[labels == label] = HIERARCHY_LEVELS[name]
    higher = np.zeros(len(labels), bool)
    for roi_class in HIGHER_CLASSES:
        if roi_class in rois:
            higher |= rois[roi_class][0] > 0
    if "streams" in rois:
        stream_labels, stream_names = rois["streams"]
        higher |= np.isin(stream_labels, [k for k, v in stream_names.items() if v in HIGHER_STREAMS])
    levels[higher & np.isnan(levels)] = 4
    return levels


def hierarchy_slope(layer_weights: np.ndarray, levels: np.ndarray) -> dict | None:
    """Least-squares slope and intercept of the layer position on level / 4 over the vertices with a level, their
    count and the correlation; None (not a number) when fewer than two levels have vertices."""
    known = np.isfinite(levels)
    if len(np.unique(levels[known])) < 2:
        return None
    n_layers = layer_weights.shape[1]
    position = layer_weights[known] @ (np.arange(n_layers) / max(n_layers - 1, 1))
    level = levels[known] / 4.0
    slope, intercept = np.polyfit(level, position, 1)
    return {"slope": float(slope), "intercept": float(intercept), "n_vertices": int(known.sum()),
            "r": float(np.corrcoef(level, position)[0, 1]) if position.std() > 0 else None,
            "n_per_level": {str(int(k)): int((levels == k).sum()) for k in np.unique(levels[known])}}


def vertex_rgba(values: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    """(V, 4) colours of scalar values; NaN values get NO_VALUE_RGBA."""
    values = np.asarray(values, np.float64)
    rgba = plt.get_cmap(cmap)(np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0, 1))
    rgba[~np.isfinite(values)] = NO_VALUE_RGBA
    return rgba


def draw_on_surface(ax, fsaverage_index: np.ndarray, rgba: np.ndarray, hemi: str, view: str,
                    fsaverage_dir: str | None) -> None:
    """The inflated hemisphere on a 3-D axis, faces coloured by their vertices' colours (module docstring)."""
    from nilearn import plotting

    coordinates, faces = fsaverage_surface(mesh_for(fsaverage_index), hemi, "inflated", fsaverage_dir)
    full = np.full((len(coordinates), 4), np.nan)
    full[np.asarray(fsaverage_index)] = rgba
    face_rgba = full[faces].mean(1)
    face_rgba[~np.isfinite(face_rgba).all(1)] = NO_VALUE_RGBA
    plotting.plot_surf((coordinates, faces), surf_map=None, hemi={"lh": "left", "rh": "right"}[hemi], view=view,
                       axes=ax, figure=ax.figure)
    ax.collections[0].set_facecolors(face_rgba)
    shown = coordinates[np.asarray(fsaverage_index)]  # zoom onto the vertices with values, one scale on every axis
    centre, half = (shown.max(0) + shown.min(0)) / 2, 0.65 * (shown.max(0) - shown.min(0)).max() + 5.0
    for axis, c in zip("xyz", centre):
        getattr(ax, f"set_{axis}lim")(c - half, c + half)


def plot_surface_panels(rows: list[tuple[str, dict[str, np.ndarray], dict]], indices: dict[str, np.ndarray],
                        view: str, title: str, out_path: str | Path, fsaverage_dir: str | None) -> None:
    """A grid: one row per (label, {hemi: RGBA (V, 4)}, colour bar {cmap, vmin, vmax, label} or {}), one column
    per hemisphere of `indices` ({hemi: fsaverage indices})."""
    hemis = list(indices)
    fig = plt.figure(figsize=(3.2 * len(hemis) + 1.4, 2.9 * len(rows) + 0.7))
    for i, (label, colours, bar) in enumerate(rows):
        for j, hemi in enumerate(hemis):
            ax = fig.add_subplot(len(rows), len(hemis), i * len(hemis) + j + 1, projection="3d")
            draw_on_surface(ax, indices[hemi], colours[hemi], hemi, view, fsaverage_dir)
            ax.set_title(f"{label} ({hemi})", fontsize="small")
        if bar:
            mappable = plt.cm.ScalarMappable(cmap=bar["cmap"], norm=plt.Normalize(bar["vmin"], bar["vmax"]))
            cax = fig.add_axes([0.90, 1 - (i + 0.8) / len(rows) * 0.93 - 0.02, 0.015, 0.6 / len(rows) * 0.93])
            fig.colorbar(mappable, cax=cax).set_label(bar["label"], fontsize="x-small")
    suptitle(fig, title)
    fig.subplots_adjust(left=0.0, right=0.88, bottom=0.0, top=1 - 0.7 / (2.9 * len(rows) + 0.7), wspace=0.0,
                        hspace=0.15)
    save_figure(fig, out_path, title)


def plot_score_maps(scores: dict[str, dict[str, np.ndarray]], indices: dict[str, np.ndarray], use_score: bool,
                    view: str, title: str, out_path: str | Path, fsaverage_dir: str | None) -> None:
    """Every model's per-vertex challenge score (or r) on the cortex, one row per model ({model: {hemi: values}})."""
    bar = ({"cmap": "inferno", "vmin": 0.0, "vmax": 100.0, "label": "challenge score (%)"} if use_score else
           {"cmap": "inferno", "vmin": 0.0, "vmax": 1.0, "label": "Pearson r"})
    rows = [(model, {hemi: vertex_rgba(values, bar["cmap"], bar["vmin"], bar["vmax"])
                     for hemi, values in by_hemi.items()}, bar) for model, by_hemi in scores.items()]
    plot_surface_panels(rows, indices, view, title, out_path, fsaverage_dir)


def plot_selector_maps(selections: dict[str, dict[str, dict[str, np.ndarray]]], indices: dict[str, np.ndarray],
                       view: str, title: str, out_path: str | Path, fsaverage_dir: str | None) -> None:
    """Per FactorTopy model ({model: {hemi: state}}): the layer colouring, eccentricity, polar angle and scale;
    a notice without any."""
    if not selections:
        plot_notice(f"{title}\n{NO_FACTORTOPY}", out_path)
        return
    rows = []
    for model, by_hemi in selections.items():
        n_layers = next(iter(by_hemi.values()))["layer_weights"].shape[1]
        rows.append((f"{model}: layer",
                     {hemi: layer_colours(state["layer_weights"]) for hemi, state in by_hemi.items()},
                     {"cmap": "coolwarm", "vmin": 1, "vmax": n_layers,
                      "label": "most-selected layer (darker: less selective)"}))
        eccentricity = {hemi: retinotopy(state["space_x"], state["space_y"]) for hemi, state in by_hemi.items()}
        rows.append((f"{model}: eccentricity", {hemi: vertex_rgba(e[0], "viridis", 0.0, 0.5)
                                                 for hemi, e in eccentricity.items()},
                     {"cmap": "viridis", "vmin": 0.0, "vmax": 0.5, "label": "image widths from the centre"}))
        rows.append((f"{model}: polar angle", {hemi: vertex_rgba(e[1], "hsv", -180.0, 180.0)
                                                for hemi, e in eccentricity.items()},
                     {"cmap": "hsv", "vmin": -180.0, "vmax": 180.0, "label": "degrees (upper field > 0)"}))
        rows.append((f"{model}: scale", {hemi: vertex_rgba(state["scale"], "magma", 0.0, 1.0)
                                          for hemi, state in by_hemi.items()},
                     {"cmap": "magma", "vmin": 0.0, "vmax": 1.0, "label": "global token's share"}))
    plot_surface_panels(rows, indices, view, title, out_path, fsaverage_dir)
