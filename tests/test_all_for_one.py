"""Seed 001's All-for-One recipe (fit.all_for_one, models.neck_readout): its parts against hand computations, and
its premise against the topographic simulator's ground truth: where streams are driven by different channels, the
stitched ensemble of specialised small models beats one whole-brain model of the same width; where every stream is
driven alike, it does not."""

import json

import h5py
import numpy as np
import pytest
import torch

from tbdencoder.evaluate.metrics import pearson_r
from tbdencoder.fit.all_for_one import (cluster_readouts, fit_student, make_teacher, soup_scheme, train_member,
                                        write_groups)
from tbdencoder.io import write_strings
from tbdencoder.models.losses import Distillation
from tbdencoder.models.neck_readout import soup_weights
from tbdencoder.recipes import model_spec, schemes, with_defaults
from tbdencoder.simulate.fmri import ROI_MAPPINGS
from tbdencoder.simulate.topographic import simulate_topographic

N_LAYERS = 3
SUBJECTS = ("subj01", "subj02")
RECIPE = {"neck": "topy", "model": {"width": 2, "batch_size": 16, "learning_rate": 2e-2, "max_epochs": 60,
                                    "patience": 8, "weight_decay": 0.0},
          "rois": {"roi_class": "streams", "groups": {"early": ["early"], "ventral": ["midventral", "ventral"],
                                                      "lateral": ["midlateral", "lateral"],
                                                      "parietal": ["midparietal", "parietal"]}},
          "soup": {"top_k": 3}, "student": {"teacher_epochs": 5}}


def write_subject(root, subject, problem, n_test):
    """responses.h5 (the last n_test images scored, also the submission images), features.h5 (patch maps and
    global tokens of the network's layers) and a neck fits file holding the true selections."""
    ids, n = problem.image_ids, len(problem.image_ids)
    responses, features, neck = (root / f"{subject}_{kind}.h5" for kind in ("responses", "features", "neck"))
    with h5py.File(responses, "w") as h5:
        h5.attrs.update(subject=subject, eval_split="train", source="simulated", fsaverage_dir="")
        write_strings(h5, "train_stimulus_id", ids[:n - n_test])
        write_strings(h5, "test_stimulus_id", ids[n - n_test:])
        write_strings(h5, "submission_stimulus_id", ids[n - n_test:])
        h5["lh/train"], h5["lh/test"] = problem.Y[:n - n_test], problem.Y[n - n_test:]
        h5["lh/fsaverage_index"] = problem.fsaverage_index
        h5["lh/roi/streams"] = problem.streams.astype(np.float32)
        h5["lh/roi/streams"].attrs["names"] = json.dumps(ROI_MAPPINGS["streams"])
    with h5py.File(features, "w") as h5:
        write_strings(h5, "stimulus_id", ids)
        for k, maps in enumerate(problem.maps):
            h5[f"layers/block{k + 1:02d}/map"] = maps.reshape(n, -1)
            h5[f"layers/block{k + 1:02d}/map"].attrs["shape"] = list(maps.shape[1:])
            h5[f"layers/block{k + 1:02d}/global"] = maps.mean((1, 2))
    with h5py.File(neck, "w") as h5:
        h5.attrs.update(family="factortopy", subject=subject, hemisphere="lh")
        write_strings(h5, "feature_blocks", [f"block{k + 1:02d}/{t}" for k in range(N_LAYERS) for t in ("map", "global")])
        h5["space_x"], h5["space_y"] = problem.rf_x.astype(np.float32), problem.rf_y.astype(np.float32)
        h5["layer_weights"] = np.eye(N_LAYERS, dtype=np.float32)[problem.layer]
        h5["scale"] = np.full(len(problem.layer), 0.05, np.float32)
    return responses, features, neck


def params(recipe):
    return {"fmri": {"models": {"topy": {"family": "factortopy", "backbone": "sim", "layers": [1, 2, 3],
                                         "tokens": ["global", "map"]}},
                     "fit": {"alphas": [1.0], "cv_folds": 2, "seed": 0}, "all_for_one": {"afo": recipe}}}


def run_recipe(root, *, streams_differ, recipe=RECIPE, n_images=200, n_test=60, student=False):
    """The recipe's steps on two simulated subjects: {output: mean test r over both subjects' vertices}."""
    files = [write_subject(root, s, simulate_topographic(n_images, 260, n_layers=N_LAYERS, channels=16, rank=2,
                                                         snr=3.0, seed=k + 1, truth_seed=0,
                                                         streams_differ=streams_differ), n_test)
             for k, s in enumerate(SUBJECTS)]
    responses, features, necks = ([str(f[i]) for f in files] for i in range(3))
    full = with_defaults(recipe)
    soups = []
    for scheme, groups in schemes(full).items():
        spec = model_spec(params(recipe), "afo", "member", scheme)
        groups_file = None if scheme.startswith("whole") else root / f"groups_{scheme}.h5"
        if groups_file is not None:
            write_groups("afo", full, scheme, responses, "lh", groups_file, whole_soup=soups[0] if soups else None)
        members = [root / f"member_{scheme}_{group}.h5" for group in groups]
        for group, out in zip(groups, members):
            train_member("afo", scheme, group, spec, features, responses, "lh", necks, out, groups_file, device="cpu")
        soups.append(root / f"soup_{scheme}.h5")
        soup_scheme("afo", full, scheme, spec, features, responses, "lh", necks, members, soups[-1], device="cpu")
    teacher = root / "teacher.h5"
    outs = {kind: [root / f"{s}_{kind}.h5" for s in SUBJECTS] for kind in ("teacher", "whole", "student")}
    make_teacher("afo", full, spec, features, responses, "lh", necks, soups, teacher, outs["teacher"], outs["whole"])
    if student:
        fit_student("afo", model_spec(params(recipe), "afo", "student"), features, responses, "lh", necks, teacher,
                    outs["student"], device="cpu")
    from tbdencoder.fit.fmri import load_fitted

    with pytest.raises(ValueError, match="an All-for-One teacher keeps its predictions, not a model to reload"):
        load_fitted(outs["teacher"][0])
    with h5py.File(outs["whole"][0]) as h5, h5py.File(responses[0]) as resp:  # the whole-brain model reloads
        ids, stored = list(resp["test_stimulus_id"].asstr()[:]), h5["test_prediction"][:]
    np.testing.assert_allclose(load_fitted(outs["whole"][0], device="cpu").predict(features[0], ids), stored,
                               rtol=1e-4, atol=1e-4 * np.abs(stored).max())
    scores = {}
    for kind, paths in outs.items():
        if kind == "student" and not student:
            continue
        r = []
        for path, resp in zip(paths, responses):
            with h5py.File(path) as fit, h5py.File(resp) as h5:
                r.append(pearson_r(fit["test_prediction"][:], h5["lh/test"][:]))
        scores[kind] = float(np.mean(np.concatenate(r)))
    return scores


@pytest.mark.parametrize("streams_differ", [True, False])
def test_the_stitched_ensemble_beats_one_whole_brain_model_only_where_streams_are_driven_differently(
        streams_differ, tmp_path):
    scores = run_recipe(tmp_path, streams_differ=streams_differ)
    gain = scores["teacher"] - scores["whole"]
    print(streams_differ, scores)
    if streams_differ:
        assert gain > 0.05, scores
    else:
        assert abs(gain) < 0.02, scores


def test_distillation_weighs_teacher_and_data_by_the_epoch_and_validates_on_the_data_alone():
    loss = Distillation(teacher_epochs=4, beta=1.0)
    prediction = torch.tensor([0.0, 1.0])
    target = torch.tensor([[0.5, 1.0], [0.0, 3.0]])  # data, teacher
    data = (0.5 * 0.5**2 + 0.0) / 2  # smooth L1 (beta 1) of the data: 0.0625
    teacher = (0.0 + (2.0 - 0.5)) / 2  # of the teacher: 0.75
    for epoch, w in ((0, 1.0), (1, 0.75), (3, 0.25), (4, 0.0), (9, 0.0)):
        loss.start_epoch(epoch)
        assert loss(prediction, target).item() == pytest.approx((1 - w) * data + w * teacher)
    loss.start_epoch(0)
    loss.eval()
    assert loss(prediction, target).item() == pytest.approx(data)


def test_the_student_follows_the_teacher_while_its_weight_is_high(tmp_path):
    """Distilled from a teacher that contradicts the data (its negation), a student whose teacher weight stays near
    1 predicts the training images like the teacher; without a teacher, like the data."""
    from tbdencoder.features.featureset import FeatureSet
    from tbdencoder.models.neck_readout import NeckReadout

    problem = simulate_topographic(120, 150, n_layers=N_LAYERS, rank=2, snr=3.0, seed=1)
    _, _, neck = write_subject(tmp_path, "subj01", problem, 20)
    names, data, shapes = [], [], []
    for k, maps in enumerate(problem.maps):
        names += [f"block{k + 1:02d}/map", f"block{k + 1:02d}/global"]
        data += [maps.reshape(len(maps), -1), maps.mean((1, 2))]
        shapes += [maps.shape[1:], None]
    X, Y = FeatureSet(names, data, shapes), problem.Y
    subjects, teacher = np.full(len(Y), "subj01"), -Y

    def fitted(teacher_epochs):
        model = NeckReadout(neck="n", width=2, batch_size=16, learning_rate=2e-2, max_epochs=8, patience=8,
                            teacher_epochs=teacher_epochs, device="cpu", from_fits={"n": [str(neck)]})
        model.fit(X, {"subj01": Y}, subjects=subjects,
                  targets={"subj01": {"hemisphere": "lh", "teacher": teacher}})
        return model.predict(X, subjects=subjects)["subj01"]

    follows = np.mean(pearson_r(fitted(1000), teacher))
    alone = np.mean(pearson_r(fitted(0), teacher))
    assert follows > 0.1 and alone < -0.5, (follows, alone)  # early stopping on the data keeps an early epoch


def test_a_killed_small_model_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """Same inputs, same member file; killed in its third epoch, the rerun trains only the epochs left."""
    import itertools

    from tbdencoder.models import trainer

    files = [write_subject(tmp_path, s, simulate_topographic(60, 120, n_layers=N_LAYERS, rank=2, seed=k + 1,
                                                           truth_seed=0), 15) for k, s in enumerate(SUBJECTS)]
    responses, features, necks = ([str(f[i]) for f in files] for i in range(3))
    recipe = {**RECIPE, "model": {**RECIPE["model"], "max_epochs": 6, "patience": 6}}
    spec = model_spec(params(recipe), "afo", "member", "whole-s0")

    def member(out):
        train_member("afo", "whole-s0", "all", spec, features, responses, "lh", necks, out, device="cpu")
        with h5py.File(out) as h5:
            return {name: h5[f"top_k/0/{name}"][()] for name in h5["top_k/0"] if isinstance(h5[f"top_k/0/{name}"],
                                                                                               h5py.Dataset)}

    reference = member(tmp_path / "reference.h5")
    np.testing.assert_equal(member(tmp_path / "again.h5"), reference)  # reproducible
    clock = itertools.count(step=1000.0)  # every epoch is past the checkpoint interval
    monkeypatch.setattr(trainer.time, "monotonic", lambda: next(clock))
    real, epochs = trainer._mean_loss, []

    def killed_in_third_epoch(data, rows, batch_size, loss_of):
        if loss_of.__name__ == "training_step":
            epochs.append(1)
            if len(epochs) == 3:
                raise KeyboardInterrupt("killed")
        return real(data, rows, batch_size, loss_of)

    monkeypatch.setattr(trainer, "_mean_loss", killed_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        member(tmp_path / "member.h5")
    assert not (tmp_path / "member.h5").exists() and list((tmp_path / "member.h5.checkpoints").glob("*.pt"))
    epochs.clear()
    monkeypatch.setattr(trainer, "_mean_loss", lambda data, rows, batch_size, loss_of: (
        epochs.append(loss_of.__name__ == "training_step"), real(data, rows, batch_size, loss_of))[1])
    np.testing.assert_equal(member(tmp_path / "member.h5"), reference)
    assert sum(epochs) == 6 - 2  # the two finished epochs are not trained again
    assert not (tmp_path / "member.h5.checkpoints").exists()


def test_a_soup_is_the_mean_of_its_members_weights():
    members = [{"w": torch.tensor([1.0, 2.0]), "b": torch.tensor(0.0)},
               {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor(3.0)}]
    soup = soup_weights(members)
    assert soup["w"].tolist() == [2.0, 4.0] and soup["b"].item() == 1.5
    with pytest.raises(ValueError, match="at least one"):
        soup_weights([])


def test_clusters_of_readout_weights_recover_planted_directions_across_subjects():
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((3, 8))
    truth = [rng.integers(0, 3, 120), rng.integers(0, 3, 90)]
    weights = [directions[t] * rng.uniform(0.5, 2.0, (len(t), 1)) + 0.05 * rng.standard_normal((len(t), 8))
               for t in truth]  # scale differs, direction is what counts
    found = cluster_readouts(weights, 3, 40, seed=0)
    both_truth, both_found = np.concatenate(truth), np.concatenate(found)
    for k in range(3):  # each planted cluster is one found cluster, the same in both subjects
        assert len(np.unique(both_found[both_truth == k])) == 1
    assert len(np.unique(both_found)) == 3


def test_roi_and_random_groups_partition_every_subjects_vertices(tmp_path):
    files = [write_subject(tmp_path, s, simulate_topographic(20, 150, n_layers=N_LAYERS, seed=k + 1), 5)
             for k, s in enumerate(SUBJECTS)]
    responses = [str(f[0]) for f in files]
    full = with_defaults({**RECIPE, "random": {"n_parts": 4, "seeds": [3]}})
    write_groups("afo", full, "rois", responses, "lh", tmp_path / "rois.h5")
    write_groups("afo", full, "random-s3", responses, "lh", tmp_path / "random.h5")
    with h5py.File(tmp_path / "rois.h5") as rois, h5py.File(tmp_path / "random.h5") as random:
        assert json.loads(rois.attrs["groups"]) == ["early", "ventral", "lateral", "parietal", "outside"]
        for s, f in zip(SUBJECTS, files):
            with h5py.File(f[0]) as h5:
                streams = h5["lh/roi/streams"][:]
            group = rois[f"{s}/group"][:]
            np.testing.assert_array_equal(group == 0, streams == 1)  # early
            np.testing.assert_array_equal(group == 1, np.isin(streams, [2, 5]))  # midventral + ventral
            np.testing.assert_array_equal(group == 4, streams == 0)  # outside every group
            sizes = np.bincount(random[f"{s}/group"][:], minlength=4)
            assert sizes.sum() == 150 and sizes.max() - sizes.min() <= 1
        assert not np.array_equal(random["subj01/group"][:], random["subj02/group"][:])
    bad = with_defaults({**RECIPE, "rois": {"roi_class": "streams", "groups": {"x": ["V1v"]}}})
    with pytest.raises(ValueError, match=r"no labels \['V1v'\] \(fmri.all_for_one rois.groups.x\)"):
        write_groups("afo", bad, "rois", responses, "lh", tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """The tiny recipe config (tests/configs/all_for_one.yaml) through the real workflow, locally."""
    from test_workflow import REPO, new_workdir, snakemake

    workdir = new_workdir(tmp_path_factory.mktemp("recipe"), REPO / "tests/configs/all_for_one.yaml")
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def _planned(workdir, *args) -> dict[str, int]:
    from test_e2e_budget import planned_jobs  # noqa: F401  (the dry run's job table)
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--cores", "1", *args], cwd=workdir,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    if "Job stats:" not in text:
        return {}
    import re

    stats = text.split("Job stats:")[1]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M) if rule != "total"}


def test_the_recipe_runs_as_stages_and_adding_a_partition_seed_reruns_only_what_follows(recipe_run):
    """The stages are jobs of their own: one small model per group; the evaluation scores the recipe's models
    beside the neck; a rerun does nothing; a new random partition seed adds its groups, members and soup and
    reruns the teacher, the student and what scores them, nothing before."""
    import yaml

    workdir = recipe_run
    metrics = json.loads((workdir / "results/metrics.json").read_text())
    for name in ("topy", "afo_whole", "afo_teacher", "afo_student"):
        assert np.isfinite(metrics["summary"][name]["challenge_score"]), name
    members = sorted(p.relative_to(workdir / "results/all_for_one/afo/lh/members").as_posix()
                     for p in (workdir / "results/all_for_one/afo/lh/members").rglob("*.h5"))
    assert members == ["rois/early.h5", "rois/outside.h5", "whole-s0/all.h5"]
    assert _planned(workdir) == {}
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["fmri"]["all_for_one"]["afo"]["random"] = {"n_parts": 2, "seeds": [5]}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    planned = _planned(workdir)
    assert planned == {"afo_groups": 1, "afo_member": 2, "afo_soup": 1, "afo_teacher": 1, "afo_student": 1,
                       "evaluate": 2, "merge_metrics": 1, "all": 1}, planned
