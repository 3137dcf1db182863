"""fixations.tsv -> stimuli.h5 of a foveal and a parafoveal crop per fixation (docs/meg.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tbdencoder.data.avs import read_fixations
from tbdencoder.data.crops import PADDING_MODES, ScreenGeometry, crop_leaves_image, crop_side_px, extract_dva_crop
from tbdencoder.data.stimuli import load_rgb, write_pixels
from tbdencoder.io import get_logger

log = get_logger("crop_stimuli")

STREAMS = ("foveal", "parafoveal")
PADDING_POLICIES = (*PADDING_MODES, "drop")


def write_crop_stimuli(fixations_path: str | Path, out_path: str | Path, *, dva: float, screen: ScreenGeometry,
                       padding: str, pad_value: int) -> None:
    """Crop `dva` degrees around each fixation (foveal) and around the trial's next fixation (parafoveal).

    Rows are fixation-major (`<fixation_id>_foveal`, `<fixation_id>_parafoveal`). The last fixation of a trial
    has no next one: its parafoveal crop is uniformly `pad_value` (padded '0'); has_next is '0' on both its rows.
    `padding`: 'constant' (pad_value) or 'edge' fill the parts of a crop outside the scene; 'drop' drops every
    fixation whose foveal or parafoveal crop leaves the scene.
    """
    if padding not in PADDING_POLICIES:
        raise ValueError(f"padding must be one of {PADDING_POLICIES}, got {padding!r}")
    if not 0 <= pad_value <= 255:
        raise ValueError(f"pad_value must be a uint8 value in 0..255, got {pad_value}")
    fixations = read_fixations(fixations_path)
    side = crop_side_px(dva, screen)
    pixels = np.full((len(fixations), len(STREAMS), side, side, 3), pad_value, dtype=np.uint8)
    padded = np.zeros((len(fixations), len(STREAMS)), dtype=bool)
    has_next = np.isfinite(fixations[["next_gx", "next_gy"]]).all(axis=1).to_numpy()
    fill = "constant" if padding == "drop" else padding  # dropped crops are never stored
    for scene_path, rows in fixations.groupby("scene_path", sort=False).indices.items():
        scene = np.asarray(load_rgb(scene_path))
        for row in rows:
            fixation = fixations.iloc[row]
            gaze = {0: (fixation["gx"], fixation["gy"])}
            if has_next[row]:
                gaze[1] = (fixation["next_gx"], fixation["next_gy"])
            for stream, xy in gaze.items():
                pixels[row, stream] = extract_dva_crop(scene, xy, dva, screen, fill, pad_value)
                padded[row, stream] = crop_leaves_image(scene.shape, xy, dva, screen)
    log.info("%s: %d fixations, %d x %d px crops (%s dva); leaving the scene: %d of %d foveal, %d of %d parafoveal "
             "(padding %r)", fixations_path, len(fixations), side, side, dva, padded[:, 0].sum(), len(fixations),
             padded[:, 1].sum(), has_next.sum(), padding)

    keep = ~padded.any(axis=1) if padding == "drop" else np.ones(len(fixations), dtype=bool)
    if padding == "drop":
        log.info("dropped %d of %d fixations whose crop leaves the scene (padding 'drop')", (~keep).sum(), len(keep))
    if not keep.any():
        raise ValueError(f"{fixations_path}: every fixation's crop leaves the scene; nothing left with padding 'drop'")
    kept = fixations[keep]

    def per_stream(values) -> list[str]:
        return [str(value) for value in values for _ in STREAMS]

    write_pixels(
        out_path,
        [f"{fixation_id}_{stream}" for fixation_id in kept["fixation_id"] for stream in STREAMS],
        pixels[keep].reshape(-1, side, side, 3),
        provenance={
            "fixation_id": per_stream(kept["fixation_id"]),
            "stream": list(STREAMS) * len(kept),
            "sceneID": per_stream(kept["sceneID"]),
            "dva": per_stream([float(dva)] * len(kept)),
            "padded": [str(int(flag)) for flag in padded[keep].ravel()],
            "has_next": per_stream(has_next[keep].astype(int)),
        },
    )
    log.info("wrote %s: %d crops", out_path, 2 * len(kept))



