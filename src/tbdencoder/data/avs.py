"""AVS-style free-viewing metadata (`<dataset_dir>/metadata.csv` + `scenes/`) -> a subject's fixations.tsv.

See docs/meg.md for both file layouts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tbdencoder.data.crops import DEFAULT_SCREEN, ScreenGeometry
from tbdencoder.data.stimuli import decode_image
from tbdencoder.io import atomic_path, get_logger

log = get_logger("avs")

INT_COLUMNS = ("subject", "session", "trial", "fix_sequence")
FLOAT_COLUMNS = ("start_time", "end_time", "duration", "mean_gx", "mean_gy")
REQUIRED_COLUMNS = (
    "subject", "session", "trial", "sceneID", "type", "recording",
    "start_time", "end_time", "duration", "fix_sequence", "mean_gx", "mean_gy",
)
SCENE_SUFFIXES = (".png", ".jpg")
FIXATION_COLUMNS = {  # fixations.tsv column -> dtype
    "fixation_id": str, "subject": np.int64, "session": np.int64, "trial": np.int64, "fix_sequence": np.int64,
    "sceneID": str, "recording": str, "onset_s": np.float64, "duration_s": np.float64,
    "gx": np.float64, "gy": np.float64, "next_gx": np.float64, "next_gy": np.float64, "scene_path": str,
}
ON_BAD = ("drop", "error")
_N_EXAMPLES = 5  # bad rows named in a warning


def subject_label(subject: int) -> str:
    return f"sub-{subject:02d}"


def fixation_label(subject: int, session: int, trial: int, fix_sequence: int) -> str:
    return f"{subject_label(subject)}_ses-{session}_trial-{trial:03d}_fix-{fix_sequence:02d}"


def read_metadata(path: str | Path) -> pd.DataFrame:
    """The `;`-separated metadata with typed columns, indexed by CSV line number (the header is line 1).

    Integer columns are int64 (`fix_sequence` nullable Int64: saccade rows may leave it empty), float columns
    float64 (empty -> NaN), the rest str. Blank lines are skipped.
    """
    try:
        table = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError as error:
        raise ValueError(f"{path}: empty metadata file; expected a header with {list(REQUIRED_COLUMNS)}") from error
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected ';'-separated columns including "
                         f"{list(REQUIRED_COLUMNS)}, found {list(table.columns)}")
    table.index = pd.RangeIndex(2, len(table) + 2, name="line")
    table = table[table.ne("").any(axis=1)].copy()
    for column in FLOAT_COLUMNS:
        text = table[column].str.strip()
        values = pd.to_numeric(text, errors="coerce")  # '' -> NaN
        _check_parsed(path, table, column, values.isna() & text.ne("") & text.str.lower().ne("nan"), "a number")
        table[column] = values.astype(np.float64)
    for column in INT_COLUMNS:
        text = table[column].str.strip()
        values = pd.to_numeric(text, errors="coerce")
        optional = text.eq("") & table["type"].ne("fixation") if column == "fix_sequence" else False
        integral = np.isfinite(values) & values.eq(values.round())
        what = "an integer (required for fixation rows)" if column == "fix_sequence" else "an integer"
        _check_parsed(path, table, column, ~(integral | optional), what)
        table[column] = values.round().astype("Int64" if column == "fix_sequence" else np.int64)
    return table


def _check_parsed(path: str | Path, table: pd.DataFrame, column: str, bad: pd.Series, what: str) -> None:
    if bad.any():
        line = bad.idxmax()
        more = f" ({bad.sum() - 1} more bad values in this column)" if bad.sum() > 1 else ""
        value = table.at[line, column]
        raise ValueError(f"{path}: line {line}, column {column!r}: expected {what}, got {value!r}{more}")


def prepare_fixations(dataset_dir: str | Path, subject: int, out_path: str | Path, *, on_bad: str,
                      screen: ScreenGeometry = DEFAULT_SCREEN) -> None:
    """Write the subject's fixations.tsv; bad fixation rows are dropped (with a warning) or raise, per `on_bad`.

    Bad rows: duplicate (subject, session, trial, fix_sequence), non-finite gaze, gaze off the screen (outside
    0..width_px x 0..height_px of `screen`), non-finite onset or duration, no `scenes/<sceneID>.png|.jpg`
    or one that cannot be decoded (a truncated file is dropped and counted here, not met when crops are cut).
    `next_gx`/`next_gy` is the next fixation of the trial by fix_sequence, left empty when that fixation is bad
    (its position is unknown), absent, or on another scene.
    """
    if on_bad not in ON_BAD:
        raise ValueError(f"on_bad must be one of {ON_BAD}, got {on_bad!r}")
    metadata_path = Path(dataset_dir) / "metadata.csv"
    metadata = read_metadata(metadata_path)
    fixations = metadata[metadata["type"].eq("fixation")]
    rows = fixations[fixations["subject"].eq(subject)].sort_values(["session", "trial", "fix_sequence"], kind="stable")
    if rows.empty:
        raise ValueError(f"{metadata_path}: no fixation rows for subject {subject}; "
                         f"subjects with fixations: {sorted(fixations['subject'].unique().tolist())}")
    scene_paths = {scene: _scene_path(Path(dataset_dir), scene) for scene in rows["sceneID"].unique()}
    reasons = _bad_reasons(rows, scene_paths, screen)
    bad = reasons.ne("")
    if bad.any():
        keys = [f"line {line} ({_row_label(rows.loc[line])}, scene {rows.at[line, 'sceneID']!r}): {reasons[line]}"
                for line in reasons.index[bad]]
        if on_bad == "error":
            raise ValueError(f"{metadata_path}: {keys[0]}; {bad.sum()} bad fixation rows of subject {subject} in all "
                             "(on_bad='drop' drops them)")
        counts = ", ".join(f"{reason}: {count}" for reason, count in reasons[bad].value_counts().items())
        log.warning("%s: dropped %d of %d fixations of subject %d (%s); first: %s", metadata_path, bad.sum(),
                    len(rows), subject, counts, "; ".join(keys[:_N_EXAMPLES]))
    if bad.all():
        raise ValueError(f"{metadata_path}: every fixation of subject {subject} is bad; nothing to write")

    following = rows.assign(good=~bad).groupby(["session", "trial"], sort=False).shift(-1)
    has_next = following["good"].eq(True) & following["sceneID"].eq(rows["sceneID"])
    kept = rows[~bad]
    table = pd.DataFrame({
        "fixation_id": [_row_label(row) for _, row in kept.iterrows()],
        "subject": kept["subject"], "session": kept["session"], "trial": kept["trial"],
        "fix_sequence": kept["fix_sequence"].astype(np.int64), "sceneID": kept["sceneID"],
        "recording": kept["recording"], "onset_s": kept["start_time"], "duration_s": kept["duration"],
        "gx": kept["mean_gx"], "gy": kept["mean_gy"],
        "next_gx": following["mean_gx"].where(has_next)[~bad], "next_gy": following["mean_gy"].where(has_next)[~bad],
        "scene_path": [str(scene_paths[scene]) for scene in kept["sceneID"]],
    })
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="")
    log.info("%s: %d fixations of subject %d in %d trials (%d without a next fixation)", out_path, len(table),
             subject, kept.groupby(["session", "trial"]).ngroups, table["next_gx"].isna().sum())


def _scene_path(dataset_dir: Path, scene: str) -> Path | None:
    """`scenes/<scene>.png` or `.jpg`, or None when neither exists."""
    for suffix in SCENE_SUFFIXES:
        path = dataset_dir / "scenes" / f"{scene}{suffix}"
        if scene and path.is_file():
            return path
    return None


def _decodes(path: Path) -> bool:
    """Whether a scene image decodes completely (checked here, not when its crops are cut)."""
    try:
        decode_image(path)
        return True
    except ValueError:
        return False


def _row_label(row: pd.Series) -> str:
    return fixation_label(row["subject"], row["session"], row["trial"], row["fix_sequence"])


def _bad_reasons(rows: pd.DataFrame, scene_paths: dict[str, Path | None], screen: ScreenGeometry) -> pd.Series:
    """Per row, why it is bad ('' when it is fine); the first failing check names it."""
    on_screen = rows["mean_gx"].between(0, screen.width_px) & rows["mean_gy"].between(0, screen.height_px)
    checks = {
        "duplicate key": rows.duplicated(["subject", "session", "trial", "fix_sequence"], keep=False),
        "non-finite gaze": ~np.isfinite(rows[["mean_gx", "mean_gy"]]).all(axis=1),
        f"gaze off the screen (outside 0..{screen.width_px} x 0..{screen.height_px} px)": ~on_screen,
        "non-finite onset or duration": ~np.isfinite(rows[["start_time", "duration"]]).all(axis=1),
        f"no scene image scenes/<sceneID>{' or '.join(SCENE_SUFFIXES)}": rows["sceneID"].map(scene_paths).isna(),
        "the scene image cannot be decoded (truncated or not an image)":
            rows["sceneID"].map({scene: path is not None and not _decodes(path) for scene, path in scene_paths.items()}),
    }
    reasons = pd.Series("", index=rows.index, dtype=object)
    for reason, failed in reversed(checks.items()):
        reasons[failed] = reason
    return reasons


def read_fixations(tsv_path: str | Path) -> pd.DataFrame:
    """A fixations.tsv with its column dtypes; empty next_gx/next_gy -> NaN."""
    table = pd.read_csv(tsv_path, sep="\t", dtype=FIXATION_COLUMNS, keep_default_na=False,
                        na_values={"next_gx": [""], "next_gy": [""]})
    missing = [column for column in FIXATION_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{tsv_path}: missing column(s) {missing}; expected {list(FIXATION_COLUMNS)}")
    return table
