"""Seed 001's All-for-One recipe as steps, one rule each (workflow/rules/all_for_one.smk), per hemisphere, every
training subject in every model (after huzeyann/MemoryEncodingModel's scripts, written anew):

1. `write_groups`: a scheme's vertex groups per subject (ROI labels, random partitions, or clusters of the
   first whole-brain model's readout weights: cosine k-means into `n_centroids`, the centroids joined by Ward
   linkage into `n_clusters`, across subjects, as the public recipe clusters its readouts);
2. `train_member`: one small model (`models.neck_readout` over the frozen FactorTopy neck) on one group of every
   subject's vertices; it keeps its `top_k` best epochs' weights; a killed one resumes from its checkpoint;
3. `soup_scheme`: each member of a scheme souped (the uniform mean of its kept weights), its vertices
   predicted for every image (training, scored, submission) and stitched into whole-hemisphere predictions;
4. `make_teacher`: the schemes' stitched predictions averaged (uniformly, as the public recipe does) into the
   teacher; fits files for `<recipe>_teacher` and for `<recipe>_whole` (the first whole-brain soup);
5. `fit_student`: one all-vertex model distilled from the teacher (`losses.Distillation`), `<recipe>_student`.

Every file a step reuses is checked first: member files against the recipe, scheme, group and subjects they
should hold, soups against their members' sha256, the teacher's training predictions against the responses'
training images. The recipe's settings (`recipes.recipes`) travel to each step as one JSON argument.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from tbdencoder.data.responses import Responses, read_rois
from tbdencoder.fit.driver import FoldFits, checkpoint_dir
from tbdencoder.fit.fmri import FmriUnit, _write_fit, fit_fmri_subjects, load_units
from tbdencoder.io import atomic_path, get_logger, write_strings
from tbdencoder.models.base import build_encoder
from tbdencoder.models.neck_readout import soup_weights
from tbdencoder.recipes import schemes

log = get_logger("all_for_one")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _subjects_of(responses_paths: list[str | Path]) -> list[str]:
    names = []
    for path in responses_paths:
        with h5py.File(path, "r") as h5:
            names.append(str(h5.attrs["subject"]))
    return names


# 1. groups -------------------------------------------------------------------------------------------------------

def _roi_groups(recipe: dict[str, Any], responses: str | Path, hemisphere: str) -> np.ndarray:
    roi_class = recipe["rois"]["roi_class"]
    rois = read_rois(responses, hemisphere)
    if roi_class not in rois:
        raise ValueError(f"{responses}: no ROI class {roi_class!r} (fmri.all_for_one rois.roi_class); it has "
                         f"{sorted(rois)}")
    labels, names = rois[roi_class]
    by_name = {name: value for value, name in names.items()}
    group_names = list(recipe["rois"]["groups"])
    out = np.full(len(labels), len(group_names), np.int64)  # 'outside'
    for g, name in enumerate(group_names):
        unknown = sorted(set(recipe["rois"]["groups"][name]) - set(by_name))
        if unknown:
            raise ValueError(f"{responses}: ROI class {roi_class} has no labels {unknown} (fmri.all_for_one rois.groups."
                             f"{name}); its labels are {sorted(by_name)}")
        out[np.isin(labels, [by_name[label] for label in recipe["rois"]["groups"][name]])] = g
    return out


def _random_groups(n_vertices: int, n_parts: int, seed: int, subject_index: int) -> np.ndarray:
    order = np.random.default_rng([seed, subject_index]).permutation(n_vertices)
    out = np.empty(n_vertices, np.int64)
    for part, members in enumerate(np.array_split(order, n_parts)):
        out[members] = part
    return out


def cluster_readouts(weights: list[np.ndarray], n_clusters: int, n_centroids: int, seed: int) -> list[np.ndarray]:
    """Each subject's vertex clusters from its readout weights (V_s, width), clustered across subjects: rows
    normalised (cosine), k-means into `n_centroids`, the centroids' cosine-similarity rows joined by Ward
    linkage into `n_clusters`; a vertex takes its centroid's cluster."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    stacked = np.concatenate(weights).astype(np.float64)
    stacked /= np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)
    n_centroids = min(n_centroids, len(stacked))
    if n_centroids < n_clusters:
        raise ValueError(f"{len(stacked)} vertices cannot make {n_clusters} clusters")
    kmeans = KMeans(n_clusters=n_centroids, n_init=1, random_state=seed).fit(stacked)
    centroids = kmeans.cluster_centers_ / np.maximum(np.linalg.norm(kmeans.cluster_centers_, axis=1, keepdims=True),
                                                     1e-12)
    joined = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(centroids @ centroids.T)
    labels = joined[kmeans.labels_]
    return np.split(labels.astype(np.int64), np.cumsum([len(w) for w in weights])[:-1])


def write_groups(recipe_name: str, recipe: dict[str, Any], scheme: str, responses_paths: list[str | Path],
                 hemisphere: str, out: str | Path, whole_soup: str | Path | None = None) -> None:
    """A scheme's group of every vertex of each subject: `<subject>/group` (V,) indices into attr `groups`."""
    subjects = _subjects_of(responses_paths)
    group_names = schemes(recipe)[scheme]
    if scheme == "rois":
        labels = [_roi_groups(recipe, path, hemisphere) for path in responses_paths]
    elif scheme.startswith("random-s"):
        seed = int(scheme.removeprefix("random-s"))
        labels = []
        for i, path in enumerate(responses_paths):
            with h5py.File(path, "r") as h5:
                labels.append(_random_groups(len(h5[hemisphere]["fsaverage_index"]), len(group_names), seed, i))
    elif scheme == "clusters":
        if whole_soup is None:
            raise ValueError("the clusters scheme needs the first whole-brain model's soup")
        with h5py.File(whole_soup, "r") as h5:
            missing = [s for s in subjects if f"{s}/readout_weight" not in h5]
            if missing:
                raise ValueError(f"{whole_soup}: no readout weights of {missing}; expected a whole-brain soup of them")
            weights = [h5[f"{s}/readout_weight"][:] for s in subjects]
        settings = recipe["clusters"]
        labels = cluster_readouts(weights, settings["n_clusters"], settings["n_centroids"], settings["seed"])
    else:  # a whole-brain scheme: one group
        labels = []
        for path in responses_paths:
            with h5py.File(path, "r") as h5:
                labels.append(np.zeros(len(h5[hemisphere]["fsaverage_index"]), np.int64))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        for subject, label in zip(subjects, labels):
            h5[f"{subject}/group"] = label
        h5.attrs.update(recipe=recipe_name, scheme=scheme, hemisphere=hemisphere, groups=json.dumps(group_names),
                        subjects=json.dumps(subjects))
    sizes = {name: int(sum((label == g).sum() for label in labels)) for g, name in enumerate(group_names)}
    log.info("%s %s %s: groups %s (vertices over %d subjects)", recipe_name, hemisphere, scheme, sizes, len(subjects))


def read_groups(path: str | Path, recipe_name: str, scheme: str, hemisphere: str,
                subjects: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """A groups file, checked against what it should hold: (group names, {subject: group per vertex})."""
    with h5py.File(path, "r") as h5:
        found = (h5.attrs.get("recipe"), h5.attrs.get("scheme"), h5.attrs.get("hemisphere"))
        if found != (recipe_name, scheme, hemisphere) or json.loads(h5.attrs["subjects"]) != subjects:
            raise ValueError(f"{path}: groups of {found} for {h5.attrs.get('subjects')}; expected recipe {recipe_name} "
                             f"scheme {scheme} {hemisphere} for {subjects}")
        return json.loads(h5.attrs["groups"]), {s: h5[f"{s}/group"][:] for s in subjects}


# 2. a small model ------------------------------------------------------------------------------------------------

def _units(features_paths: list[str | Path], responses_paths: list[str | Path], out: str | Path) -> list[FmriUnit]:
    """One unit per subject; `features_paths` subject by subject, the same number (backbones) each."""
    if not responses_paths or len(features_paths) % len(responses_paths):
        raise ValueError(f"expected the same number of features files for each of {len(responses_paths)} subjects, "
                         f"got {len(features_paths)}")
    per = len(features_paths) // len(responses_paths)
    return [FmriUnit([str(f) for f in features_paths[i * per:(i + 1) * per]], responses, out)
            for i, responses in enumerate(responses_paths)]


def _stack(rows: dict, subjects: list[str]):
    from tbdencoder.features.featureset import FeatureSet

    X = FeatureSet.stack([rows[s].X for s in subjects])
    return X, np.concatenate([np.full(rows[s].X.n_rows, s) for s in subjects])


def train_member(recipe_name: str, scheme: str, group: str, spec: dict[str, Any], features_paths: list[str | Path],
                 responses_paths: list[str | Path], hemisphere: str, neck_fits: list[str], out: str | Path,
                 groups_path: str | Path | None = None, device: str = "auto") -> None:
    """One small model of the recipe on one group of every subject's vertices; writes its kept epochs' weights
    (`top_k/<i>/<name>`), each subject's vertices and target moments, and the fit's time and parameter count."""
    start = time.perf_counter()
    units = _units(features_paths, responses_paths, out)
    train, _, targets, _ = load_units(units, hemisphere, spec)
    subjects = list(train)
    if groups_path is None:
        vertices = {s: np.arange(train[s].Y.shape[1]) for s in subjects}
    else:
        names, labels = read_groups(groups_path, recipe_name, scheme, hemisphere, subjects)
        vertices = {s: np.flatnonzero(labels[s] == names.index(group)) for s in subjects}
    fitted = [s for s in subjects if len(vertices[s])]
    checkpoints = checkpoint_dir(out)
    model = None
    if fitted:
        model = build_encoder(spec, device, checkpoints / "joint.pt", {spec["neck"]: neck_fits})
        X, whose = _stack(train, fitted)
        model.fit(X, {s: train[s].Y[:, vertices[s]] for s in fitted}, subjects=whose,
                  targets={s: {**targets[s], "vertices": vertices[s]} for s in fitted})
    seconds = time.perf_counter() - start
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        for s in subjects:
            h5[f"{s}/vertices"] = vertices[s]
        if model is not None:
            for s in fitted:
                h5[f"{s}/y_mean"], h5[f"{s}/y_scale"] = model.y_moments_[s]
            for i, (epoch, loss, weights) in enumerate(model.top_k_):
                for name, value in weights.items():
                    h5[f"top_k/{i}/{name}"] = value.numpy()
                h5[f"top_k/{i}"].attrs.update(epoch=epoch, validation_loss=loss)
            for name, values in model.curves_.items():
                h5[f"curves/{name}"] = values
        n_parameters = 0 if model is None else sum(p.numel() for p in model.network_.parameters())
        h5.attrs.update(recipe=recipe_name, scheme=scheme, group=group, hemisphere=hemisphere,
                        subjects=json.dumps(subjects), fitted_subjects=json.dumps(fitted),
                        spec=json.dumps(spec, sort_keys=True), features=json.dumps([list(map(str, u.features)) for u in units]),
                        responses=json.dumps([str(u.responses) for u in units]), neck_fits=json.dumps(neck_fits),
                        fit_seconds=seconds, n_parameters=n_parameters)
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info("%s %s %s/%s: %s vertices, %d parameters, %.1f s", recipe_name, hemisphere, scheme, group,
             "+".join(str(len(vertices[s])) for s in subjects), n_parameters, seconds)



# 3. the soup of each member, stitched ----------------------------------------------------------------------------

def _check_member(path: str | Path, recipe_name: str, scheme: str, group: str, hemisphere: str,
                  subjects: list[str]) -> dict[str, Any]:
    with h5py.File(path, "r") as h5:
        attrs = dict(h5.attrs)
    found = (attrs.get("recipe"), attrs.get("scheme"), attrs.get("group"), attrs.get("hemisphere"))
    if found != (recipe_name, scheme, group, hemisphere) or json.loads(attrs.get("subjects", "[]")) != subjects:
        raise ValueError(f"{path}: a small model of {found} for {attrs.get('subjects')}; expected recipe {recipe_name} "
                         f"{scheme}/{group} {hemisphere} for {subjects}")
    return attrs


def _read_member(path: str | Path, fitted: list[str]) -> tuple[list[dict[str, torch.Tensor]], dict, dict]:
    """The kept epochs' weights (best first), each fitted subject's target moments and the loss curves of a
    member file."""
    with h5py.File(path, "r") as h5:
        kept = [{name: torch.as_tensor(h5[f"top_k/{i}"][name][()]) for name in _dataset_names(h5[f"top_k/{i}"])}
                for i in range(len(h5.get("top_k", {})))]
        moments = {s: (h5[f"{s}/y_mean"][:], h5[f"{s}/y_scale"][:]) for s in fitted}
        curves = {name: h5[f"curves/{name}"][()] for name in _dataset_names(h5["curves"])} if "curves" in h5 else {}
    if fitted and not kept:
        raise ValueError(f"{path}: a fitted small model without kept weights (top_k); rerun it")
    return kept, moments, curves


def _dataset_names(group: h5py.Group) -> list[str]:
    names = []
    group.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


def soup_scheme(recipe_name: str, recipe: dict[str, Any], scheme: str, spec: dict[str, Any],
                features_paths: list[str | Path],
                responses_paths: list[str | Path], hemisphere: str, neck_fits: list[str],
                member_paths: list[str | Path], out: str | Path, device: str = "auto") -> None:
    """Each member of a scheme souped (uniform mean of its kept epochs), predicting its vertices of every
    subject's training, scored and submission images, stitched: per subject `train_prediction` (float16, the
    teacher's part for distillation), `prediction` (scored then submission images, float32), `readout_weight`,
    and the per-vertex state of a one-group scheme (the whole-brain model) with its aligner."""
    start = time.perf_counter()
    units = _units(features_paths, responses_paths, out)
    train, target, targets, _ = load_units(units, hemisphere, spec)
    subjects = list(train)
    group_names = schemes(recipe)[scheme]
    if len(member_paths) != len(group_names):
        raise ValueError(f"scheme {scheme} has groups {group_names}: expected one member file each, got {member_paths}")
    stitched = {s: {"train_prediction": np.zeros(train[s].Y.shape, np.float32),
                    "prediction": np.zeros((target[s].X.n_rows, train[s].Y.shape[1]), np.float32),
                    "readout_weight": np.zeros((train[s].Y.shape[1], int(spec["width"])), np.float32)}
                for s in subjects}
    covered = {s: np.zeros(train[s].Y.shape[1], bool) for s in subjects}
    states, member_sha, fit_seconds, n_parameters = {}, {}, 0.0, 0
    for group, path in zip(group_names, member_paths):
        attrs = _check_member(path, recipe_name, scheme, group, hemisphere, subjects)
        member_sha[str(path)] = file_sha256(path)
        fit_seconds += float(attrs["fit_seconds"])
        n_parameters += int(attrs["n_parameters"])
        fitted = json.loads(attrs["fitted_subjects"])
        with h5py.File(path, "r") as h5:
            vertices = {s: h5[f"{s}/vertices"][:] for s in subjects}
        for s in subjects:
            if covered[s][vertices[s]].any():
                raise ValueError(f"{path}: group {group} overlaps another group of scheme {scheme} ({s})")
            covered[s][vertices[s]] = True
        if not fitted:
            continue
        kept, moments, curves = _read_member(path, fitted)
        model = build_encoder(spec, device, None, {spec["neck"]: neck_fits})
        X, _ = _stack(train, fitted)
        model.setup(X, fitted, {s: {**targets[s], "vertices": vertices[s]} for s in fitted})
        model.load_weights(soup_weights(kept), moments)
        model.curves_ = curves
        for s in fitted:
            one = model.predict(train[s].X, subjects=np.full(train[s].X.n_rows, s))[s]
            stitched[s]["train_prediction"][:, vertices[s]] = one
            stitched[s]["prediction"][:, vertices[s]] = model.predict(
                target[s].X, subjects=np.full(target[s].X.n_rows, s))[s]
            state = model.subject_state(s)
            stitched[s]["readout_weight"][vertices[s]] = state["readout_weight"]
            if len(group_names) == 1:
                states[s] = {**state, **model.subject_artifacts(s)}
    uncovered = {s: int((~c).sum()) for s, c in covered.items() if not c.all()}
    if uncovered:
        raise ValueError(f"scheme {scheme}: its groups leave vertices out {uncovered}; a scheme must partition them")
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        for s in subjects:
            h5[f"{s}/train_prediction"] = stitched[s]["train_prediction"].astype(np.float16)
            h5[f"{s}/prediction"] = stitched[s]["prediction"]
            h5[f"{s}/readout_weight"] = stitched[s]["readout_weight"]
            for key, value in states.get(s, {}).items():
                h5[f"{s}/state/{key}"] = value
        h5.attrs.update(recipe=recipe_name, scheme=scheme, hemisphere=hemisphere, subjects=json.dumps(subjects),
                        members=json.dumps(member_sha), fit_seconds=fit_seconds + time.perf_counter() - start,
                        n_parameters=n_parameters)
    log.info("%s %s %s: %d members souped and stitched in %.1f s", recipe_name, hemisphere, scheme,
             len(member_paths), time.perf_counter() - start)



# 4. the teacher ---------------------------------------------------------------------------------------------------

def _check_soup(path: str | Path, recipe_name: str, scheme: str, hemisphere: str, subjects: list[str]) -> dict:
    with h5py.File(path, "r") as h5:
        attrs = dict(h5.attrs)
    found = (attrs.get("recipe"), attrs.get("scheme"), attrs.get("hemisphere"))
    if found != (recipe_name, scheme, hemisphere) or json.loads(attrs.get("subjects", "[]")) != subjects:
        raise ValueError(f"{path}: a soup of {found} for {attrs.get('subjects')}; expected recipe {recipe_name} "
                         f"scheme {scheme} {hemisphere} for {subjects}")
    return attrs


def make_teacher(recipe_name: str, recipe: dict[str, Any], spec: dict[str, Any], features_paths: list[str | Path],
                 responses_paths: list[str | Path], hemisphere: str, neck_fits: list[str], soup_paths: list[str | Path],
                 out: str | Path, teacher_fits: list[str | Path], whole_fits: list[str | Path]) -> None:
    """The schemes' stitched predictions averaged (uniformly) into the teacher (`out`: per subject
    `train_prediction` for the student, with the training images' ids); per subject a fits file of the teacher
    (`<recipe>_teacher`: its predictions, the members' summed time and parameters) and of the first whole-brain
    model (`<recipe>_whole`: its soup's per-vertex state and aligner, reloadable as neck_readout)."""
    names = list(schemes(recipe))
    if len(soup_paths) != len(names):
        raise ValueError(f"recipe {recipe_name} has schemes {names}: expected one soup each, got {soup_paths}")
    units = _units(features_paths, responses_paths, out)
    train, _, _, responses = load_units(units, hemisphere, spec)
    subjects = list(train)
    sums = {s: {"train_prediction": 0.0, "prediction": 0.0} for s in subjects}
    fit_seconds, n_parameters, soups = 0.0, 0, {}
    for scheme, path in zip(names, soup_paths):
        attrs = _check_soup(path, recipe_name, scheme, hemisphere, subjects)
        soups[scheme] = file_sha256(path)
        fit_seconds += float(attrs["fit_seconds"])
        n_parameters += int(attrs["n_parameters"])
        with h5py.File(path, "r") as h5:
            for s in subjects:
                for key in sums[s]:
                    sums[s][key] = sums[s][key] + h5[f"{s}/{key}"][:].astype(np.float32)
    whole = names[0]
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        for s in subjects:
            h5[f"{s}/train_prediction"] = sums[s]["train_prediction"] / len(names)
            write_strings(h5, f"{s}/train_stimulus_id", responses[s].train_stimulus_id)
        h5.attrs.update(recipe=recipe_name, hemisphere=hemisphere, subjects=json.dumps(subjects),
                        soups=json.dumps(soups), fit_seconds=fit_seconds, n_parameters=n_parameters)
    recipe_attrs = {"recipe": recipe_name, "soups": json.dumps(soups)}
    with h5py.File(soup_paths[0], "r") as h5:
        whole_state = {s: {key: h5[f"{s}/state/{key}"][()] for key in _dataset_names(h5[f"{s}/state"])} for s in subjects}
        whole_attrs = {"fit_seconds": float(h5.attrs["fit_seconds"]), "n_parameters": int(h5.attrs["n_parameters"])}
    for s, unit, teacher_out, whole_out in zip(subjects, units, teacher_fits, whole_fits):
        prediction = sums[s]["prediction"] / len(names)
        n_targets = prediction.shape[1]
        _write_fit(FmriUnit(unit.features, unit.responses, teacher_out), responses[s], hemisphere,
                   f"{recipe_name}_teacher", {**spec, "family": "all_for_one_teacher", "schemes": names},
                   train[s], FoldFits(prediction, np.zeros(len(prediction), np.int64), [{}], [{}]), None, fit_seconds,
                   {**recipe_attrs, "n_parameters": n_parameters, "n_targets": n_targets})
        state = whole_state[s]
        per_vertex = {key: value for key, value in state.items() if not key.startswith(("weights/", "train_loss",
                                                                                       "validation_loss", "best_"))}
        artifacts = {key: value for key, value in state.items() if key not in per_vertex}
        with h5py.File(soup_paths[0], "r") as h5:
            whole_prediction = h5[f"{s}/prediction"][:]
        _write_fit(FmriUnit(unit.features, unit.responses, whole_out), responses[s], hemisphere,
                   f"{recipe_name}_whole", spec, train[s],
                   FoldFits(whole_prediction, np.zeros(len(whole_prediction), np.int64), [per_vertex], [artifacts]),
                   {spec["neck"]: neck_fits}, whole_attrs["fit_seconds"],
                   {**recipe_attrs, "scheme": whole, "n_parameters": whole_attrs["n_parameters"]})
    log.info("%s %s: teacher of %d schemes %s, %d parameters, %.0f s of training", recipe_name, hemisphere,
             len(names), names, n_parameters, fit_seconds)


# 5. the student ---------------------------------------------------------------------------------------------------

def read_teacher(path: str | Path, recipe_name: str, hemisphere: str, responses: dict) -> dict[str, np.ndarray]:
    """{subject: the teacher's predictions of its training images}, checked against the responses' training
    images (their ids, in order)."""
    with h5py.File(path, "r") as h5:
        found = (h5.attrs.get("recipe"), h5.attrs.get("hemisphere"))
        if found != (recipe_name, hemisphere):
            raise ValueError(f"{path}: a teacher of {found}; expected recipe {recipe_name} {hemisphere}")
        out = {}
        for s, read in responses.items():
            if f"{s}/train_prediction" not in h5:
                raise ValueError(f"{path}: no teacher predictions of {s}")
            if list(h5[f"{s}/train_stimulus_id"].asstr()[:]) != list(read.train_stimulus_id):
                raise ValueError(f"{path}: the teacher of {s} predicted other training images than its responses.h5 "
                                 "holds; rerun the recipe")
            out[s] = h5[f"{s}/train_prediction"][:]
    return out


def fit_student(recipe_name: str, spec: dict[str, Any], features_paths: list[str | Path],
                responses_paths: list[str | Path], hemisphere: str, neck_fits: list[str], teacher: str | Path,
                outs: list[str | Path], device: str = "auto") -> None:
    """The student: one all-vertex neck_readout model of every subject, distilled from the teacher
    (`<recipe>_student`, one fits file per subject, as `fit-joint` writes them)."""
    units = [FmriUnit(unit.features, unit.responses, path)
             for unit, path in zip(_units(features_paths, responses_paths, outs[0]), outs)]
    responses = {read.subject: read for read in (Responses.read(unit.responses) for unit in units)}
    predictions = read_teacher(teacher, recipe_name, hemisphere, responses)
    fit_fmri_subjects(units, hemisphere, f"{recipe_name}_student", spec, device, {spec["neck"]: neck_fits},
                      {s: {"teacher": prediction} for s, prediction in predictions.items()})
