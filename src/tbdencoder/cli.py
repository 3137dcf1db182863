"""`tbdencoder <step> ...`: one subcommand per pipeline step; values come from the caller, never from params.yaml.

Paths are options; the params.yaml sections a step reads come as one JSON object (`--settings`), keyed by
their dotted paths and checked against the params schema, e.g.
  tbdencoder meg-crops --fixations fixations.tsv --out stimuli.h5 --settings '{"meg.crops": {"dva": 2.0,
    "padding": "constant", "pad_value": 128}, "meg.screen": {"width_px": 1024, "height_px": 768,
    "width_cm": 37.5, "viewing_distance_cm": 80.0}}'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from tbdencoder.steps import load_step

# The params.yaml sections each step reads (its --settings, in this order), and an example for --help.
SETTINGS: dict[str, tuple[tuple[str, ...], str]] = {
    "simulate fmri": (("simulate.fmri", "fmri.subjects", "fmri.heldout_subjects"),
                      '{"simulate.fmri": {"seed": 1, "n_vertices": [500]}, "fmri.subjects": ["subj01"], '
                      '"fmri.heldout_subjects": []}'),
    "simulate meg": (("simulate.meg", "meg.subjects", "meg.heldout_subjects", "meg.screen", "meg.crops.dva"),
                     '{"simulate.meg": {"snr": 1.0}, "meg.subjects": [1, 2], "meg.heldout_subjects": [], "meg.screen": '
                     '{"width_px": 1024, "height_px": 768, "width_cm": 37.5, "viewing_distance_cm": 80.0}, '
                     '"meg.crops.dva": 2.0}'),
    "prepare-fmri": (("fmri.hemispheres", "fmri.roi_classes", "fmri.heldout_fraction", "fmri.split_seed",
                      "fmri.fsaverage_dir"),
                     '{"fmri.hemispheres": ["lh", "rh"], "fmri.roi_classes": ["streams"], "fmri.heldout_fraction": 0.1, '
                     '"fmri.split_seed": 0, "fmri.fsaverage_dir": null}'),
    "meg-fixations": (("meg.screen", "meg.bad_fixations"),
                      '{"meg.screen": {"width_px": 1024, "height_px": 768, "width_cm": 37.5, '
                      '"viewing_distance_cm": 80.0}, "meg.bad_fixations": "drop"}'),
    "preprocess-meg": (("meg.preprocessing", "meg.bad_fixations"),
                       '{"meg.preprocessing": {"line_freq_hz": 50.0, "l_freq_hz": 0.5, "h_freq_hz": 40.0, '
                       '"sfreq_hz": 100.0, "tmin_s": -0.1, "tmax_s": 0.4, "baseline_s": [-0.1, 0.0], '
                       '"reject_grad": 4e-10}, "meg.bad_fixations": "drop"}'),
    "meg-crops": (("meg.crops", "meg.screen"),
                  '{"meg.crops": {"dva": 2.0, "padding": "constant", "pad_value": 128}, "meg.screen": {"width_px": '
                  '1024, "height_px": 768, "width_cm": 37.5, "viewing_distance_cm": 80.0}}'),
    "features": (("features.backbones.*",),
                 '{"features.backbones.clip": {"library": "open_clip", "model": "ViT-B-32", "pretrained": "openai", '
                 '"random_init": false, "seed": 0, "layers": [6, 12], "grid_size": 2, "batch_size": 32}}'),
    "kshot-meg": (("meg.evaluation",), '{"meg.evaluation": {"compare": ["foveal", "dual"], "n_best_sensors": 10, '
                                      '"kshot_sizes": [25, 50, 100, 200]}}'),
    "decode-meg": (("meg.decoding",), '{"meg.decoding": {"window_s": 0.25, "step_s": 0.05, "models": {"ridge_decoder": '
                                      '{"family": "ridge", "backbone": "clip_vitb32"}}}}'),
    "evaluate-decoding": (("*.decoding",), '{"fmri.decoding": {"bootstrap_resamples": 1000, '
                                                            '"models": {"ridge_decoder": {"family": "ridge", '
                                                            '"backbone": "clip_vitb32"}}}}'),
    "kshot-fmri": (("fmri.evaluation",), '{"fmri.evaluation": {"submission_model": "ridge_grid", '
                                        '"figure_roi_classes": ["streams"], "kshot_sizes": [25, 50, 100, 200]}}'),
    "evaluate": (("fmri.evaluation",),
                 '{"fmri.evaluation": {"submission_model": "ridge_grid", "figure_roi_classes": ["streams"]}}'),
    "evaluate-meg": (("meg.screen", "meg.noise_ceiling", "meg.evaluation"),
                     '{"meg.screen": {"width_px": 1024, "height_px": 768, "width_cm": 37.5, '
                     '"viewing_distance_cm": 80.0}, "meg.noise_ceiling": {"max_distance_dva": 0.5, "min_pairs": 20}, '
                     '"meg.evaluation": {"compare": ["foveal", "dual"], "n_best_sensors": 10}}'),
}


def _settings(a: argparse.Namespace, step: str) -> list[Any]:
    from tbdencoder.config import parse_settings

    return parse_settings(a.settings, *SETTINGS[step][0])


def _simulation(a: argparse.Namespace, step: str) -> list[Any]:
    """The step's settings; the first, `simulate.<half>`, without the workflow's switch `enabled`."""
    simulation, *rest = _settings(a, step)
    del simulation["enabled"]
    return [simulation, *rest]


def _simulate_fmri(a: argparse.Namespace, simulate_fmri: Callable) -> None:
    simulation, subjects, heldout = _simulation(a, "simulate fmri")
    simulate_fmri(a.out_dir, subjects=subjects + heldout, **simulation)


def _simulate_meg(a: argparse.Namespace, simulate_meg: Callable, screen_geometry: type) -> None:
    simulation, subjects, heldout, screen, crop_dva = _simulation(a, "simulate meg")
    simulate_meg(a.out_dir, subjects=subjects + heldout, crop_dva=crop_dva, screen=screen_geometry(**screen),
                 **simulation)


def _meg_fixations(a: argparse.Namespace, prepare_fixations: Callable, screen_geometry: type) -> None:
    screen, on_bad = _settings(a, "meg-fixations")
    prepare_fixations(a.dataset_dir, a.subject, a.out, on_bad=on_bad, screen=screen_geometry(**screen))


def _preprocess_meg(a: argparse.Namespace, preprocess_meg: Callable) -> None:
    preprocessing, on_bad = _settings(a, "preprocess-meg")
    preprocess_meg(a.fixations, a.dataset_dir, a.out, **preprocessing, on_bad=on_bad, n_jobs=a.threads or 1)


def _meg_crops(a: argparse.Namespace, write_crop_stimuli: Callable, screen_geometry: type) -> None:
    crops, screen = _settings(a, "meg-crops")
    write_crop_stimuli(a.fixations, a.out, **crops, screen=screen_geometry(**screen))


def _spec(a: argparse.Namespace, modality: str) -> dict:
    from tbdencoder.config import parse_model_spec

    return parse_model_spec(a.spec, modality)


def _from_fits(a: argparse.Namespace) -> dict[str, str | list[str]]:
    """--from-fits NAME=PATH ... as {model name: fits file}; a name given several times (a model of several
    subjects reading one fits file per subject) maps to the list of its files."""
    pairs = [item.split("=", 1) for item in a.from_fits]
    bad = [item for item, pair in zip(a.from_fits, pairs) if len(pair) != 2 or not all(pair)]
    if bad:
        raise ValueError(f"--from-fits: expected MODEL=PATH entries, got {bad}")
    paths: dict[str, list[str]] = {}
    for name, path in pairs:
        paths.setdefault(name, []).append(path)
    return {name: found[0] if len(found) == 1 else found for name, found in paths.items()}


def _fit_meg(a: argparse.Namespace, fit_meg_subject: Callable) -> None:
    fit_meg_subject(a.epochs, a.features, a.out, model_name=a.model_name, spec=_spec(a, "meg"), device=a.device,
                    from_fits=_from_fits(a), cohort_epochs=a.cohort_epochs)


def _fit_meg_heldout(a: argparse.Namespace, fit_meg_heldout: Callable) -> None:
    fit_meg_heldout(a.train_epochs, a.train_features, a.epochs, a.features, a.out, model_name=a.model_name,
                    spec=_spec(a, "meg"), device=a.device, from_fits=_from_fits(a))


def _fit_meg_joint(a: argparse.Namespace, fit_meg_joint: Callable) -> None:
    fit_meg_joint(a.epochs, a.features, a.out, model_name=a.model_name, spec=_spec(a, "meg"), device=a.device,
                  from_fits=_from_fits(a))


def _kshot_meg(a: argparse.Namespace, kshot_meg_subject: Callable) -> None:
    (evaluation,) = _settings(a, "kshot-meg")
    kshot_meg_subject(a.train_epochs, a.train_features, a.epochs, a.features, a.metrics_out, a.figure_out,
                      model_name=a.model_name, spec=_spec(a, "meg"), ks=evaluation["kshot_sizes"],
                      n_best_sensors=evaluation["n_best_sensors"], device=a.device)


def _kshot_fmri(a: argparse.Namespace, kshot_fmri_subject: Callable) -> None:
    (evaluation,) = _settings(a, "kshot-fmri")
    kshot_fmri_subject(a.train_features, a.train_responses, a.features, a.responses, a.metrics_out, a.figure_out,
                       model_name=a.model_name, spec=_spec(a, "fmri"), ks=evaluation["kshot_sizes"], device=a.device)


def _evaluate_meg(a: argparse.Namespace, evaluate_meg_subject: Callable, screen_geometry: type) -> None:
    screen, noise_ceiling, evaluation = _settings(a, "evaluate-meg")
    figures = {"r_time": a.figure_r_time, "topomap": a.figure_topomap, "dual_vs_foveal": a.figure_dual_vs_foveal,
               "preferred_block": a.figure_preferred_block, "training": a.figure_training}
    evaluate_meg_subject(a.epochs, a.fits, a.metrics_out, a.scores_out, figures,
                         max_distance_px=screen_geometry(**screen).dva_to_px(noise_ceiling["max_distance_dva"]),
                         min_pairs=noise_ceiling["min_pairs"], n_best_sensors=evaluation["n_best_sensors"],
                         compare=tuple(evaluation["compare"]), bootstrap_resamples=evaluation["bootstrap_resamples"],
                         ci_level=evaluation["ci_level"], bootstrap_seed=evaluation["bootstrap_seed"])


def _prepare_fmri(a: argparse.Namespace, prepare_fmri: Callable) -> None:
    *settings, fsaverage_dir = _settings(a, "prepare-fmri")
    prepare_fmri(a.dataset_dir, a.subject, *settings, a.responses_out, a.stimuli_out, fsaverage_dir)


def _features(a: argparse.Namespace, extract_features: Callable) -> None:
    (backbone,) = _settings(a, "features")
    backbone["model_name"] = backbone.pop("model")
    extract_features(a.stimuli, a.out, **backbone, num_workers=a.num_workers, device=a.device,
                     cache_dir=a.cache_dir)


def _fit(a: argparse.Namespace, fit_fmri: Callable) -> None:
    fit_fmri(a.features, a.responses, a.hemisphere, a.model_name, _spec(a, "fmri"), a.out, device=a.device,
             from_fits=_from_fits(a))


def _fit_joint(a: argparse.Namespace, fit_fmri_joint: Callable) -> None:
    fit_fmri_joint(a.features, a.responses, a.hemisphere, a.model_name, _spec(a, "fmri"), a.out, device=a.device,
                   from_fits=_from_fits(a))


def _recipe(a: argparse.Namespace) -> dict[str, Any]:
    from tbdencoder.config import parse_settings
    from tbdencoder.recipes import with_defaults

    (recipe,) = parse_settings(a.settings, f"fmri.all_for_one.{a.recipe_name}")
    return with_defaults(recipe)


def _afo_groups(a: argparse.Namespace, write_groups: Callable) -> None:
    write_groups(a.recipe_name, _recipe(a), a.scheme, a.responses, a.hemisphere, a.out, whole_soup=a.whole_soup)


def _afo_member(a: argparse.Namespace, train_member: Callable) -> None:
    _recipe(a)
    train_member(a.recipe_name, a.scheme, a.group, _spec(a, "fmri"), a.features, a.responses, a.hemisphere,
                 [str(path) for path in a.neck_fits], a.out, groups_path=a.groups, device=a.device)


def _afo_soup(a: argparse.Namespace, soup_scheme: Callable) -> None:
    soup_scheme(a.recipe_name, _recipe(a), a.scheme, _spec(a, "fmri"), a.features, a.responses, a.hemisphere,
                [str(path) for path in a.neck_fits], a.members, a.out, device=a.device)


def _afo_teacher(a: argparse.Namespace, make_teacher: Callable) -> None:
    make_teacher(a.recipe_name, _recipe(a), _spec(a, "fmri"), a.features, a.responses, a.hemisphere,
                 [str(path) for path in a.neck_fits], a.soups, a.out, a.teacher_fits, a.whole_fits)


def _afo_student(a: argparse.Namespace, fit_student: Callable) -> None:
    _recipe(a)
    fit_student(a.recipe_name, _spec(a, "fmri"), a.features, a.responses, a.hemisphere,
                [str(path) for path in a.neck_fits], a.teacher, a.out, device=a.device)


def _predict(a: argparse.Namespace, predict_stimuli: Callable, predict_meg_stimuli: Callable, open_fit: Callable) -> None:
    inputs = [a.fit, *a.features, *(a.train_features or []), *([a.responses] if a.responses else [])]
    clash = [path for path in inputs if Path(path).resolve() == Path(a.out).resolve()
             or (Path(a.out).exists() and Path(path).exists() and Path(a.out).samefile(path))]
    if clash:
        raise ValueError(f"--out {a.out} is also an input ({clash[0]}): writing predictions there would replace it")
    with open_fit(a.fit) as h5:
        meg = "scheme" in h5.attrs  # MEG fits say how their folds were made
    if meg:
        if len(a.features) != 1 or a.train_features or a.responses:
            raise ValueError(f"{a.fit} is a MEG fit: give one --features file (crop features) and neither "
                             "--train-features nor --responses (the fit names its training files)")
        predict_meg_stimuli(a.fit, a.features[0], a.out, device=a.device)
    else:
        predict_stimuli(a.fit, a.features, a.out, train_features=a.train_features, responses_path=a.responses,
                        device=a.device)


def _evaluate(a: argparse.Namespace, evaluate_subject: Callable) -> None:
    (evaluation,) = _settings(a, "evaluate")
    evaluate_subject(a.responses, a.fits, a.metrics_out, a.table_out, a.scores_out, a.figure_out, a.submission_dir,
                     evaluation["submission_model"], evaluation["figure_roi_classes"],
                     figure_preferred_block_out=a.figure_preferred_block, figure_training_out=a.figure_training,
                     figure_brain_scores_out=a.figure_brain_scores, figure_brain_selectors_out=a.figure_brain_selectors,
                     brain_map_view=evaluation["brain_map_view"])


def _merge_metrics(a: argparse.Namespace, merge_metrics: Callable) -> None:
    merge_metrics(a.inputs, a.out, meg_inputs=a.meg_inputs, kshot_inputs=a.kshot_inputs,
                  fmri_kshot_inputs=a.fmri_kshot_inputs, decoding_inputs=a.decoding_inputs,
                  fmri_decoding_inputs=a.fmri_decoding_inputs)


def _decode_meg(a: argparse.Namespace, decode_meg: Callable) -> None:
    from tbdencoder.config import parse_decoding_spec

    (decoding,) = _settings(a, "decode-meg")
    decode_meg(a.epochs, a.features, a.out, model_name=a.model_name, spec=parse_decoding_spec(a.spec, "meg"),
               window_s=decoding["window_s"], step_s=decoding["step_s"], device=a.device)


def _decode_meg_heldout(a: argparse.Namespace, decode_meg_heldout: Callable) -> None:
    from tbdencoder.config import parse_decoding_spec

    (decoding,) = _settings(a, "decode-meg")
    decode_meg_heldout(a.train_epochs, a.train_features, a.epochs, a.features, a.out, model_name=a.model_name,
                       spec=parse_decoding_spec(a.spec, "meg"), window_s=decoding["window_s"],
                       step_s=decoding["step_s"], device=a.device)


def _decode_fmri(a: argparse.Namespace, decode_fmri: Callable) -> None:
    from tbdencoder.config import parse_decoding_spec

    decode_fmri(a.responses, a.features, a.out, model_name=a.model_name, spec=parse_decoding_spec(a.spec, "fmri"),
                device=a.device)


def _evaluate_decoding(a: argparse.Namespace, evaluate_decoding: Callable) -> None:
    (evaluation,) = _settings(a, "evaluate-decoding")  # meg.decoding or fmri.decoding
    evaluate_decoding(a.decodings, a.metrics_out, a.figure_out, resamples=evaluation["bootstrap_resamples"],
                      level=evaluation["ci_level"], seed=evaluation["bootstrap_seed"])


def _validate_params(a: argparse.Namespace, load_params: Callable) -> None:
    load_params(a.params)
    print(f"{a.params}: valid")


def _dvc_yaml(a: argparse.Namespace, write_dvc_yaml: Callable) -> None:
    if write_dvc_yaml(a.params, a.out, check=a.check):
        print(f"{a.out}: rewritten from {a.params}")


def _dvc_stage(a: argparse.Namespace, run_stage: Callable) -> None:
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        raise ValueError("no command given (tbdencoder dvc-stage --stage NAME --rules RULE... -- snakemake ...)")
    returncode = run_stage(a.stage, a.rules, command)
    if returncode:
        raise SystemExit(returncode)


def _add_model_args(p: argparse.ArgumentParser, spec_help: str, outs: str | None = None) -> None:
    """--model-name, --spec, --from-fits, --device and --out (`outs`: None for one fits file, "+" for one per
    subject, "" for none)."""
    p.add_argument("--model-name", required=True)
    p.add_argument("--spec", required=True, help=f"the model as one JSON object: {spec_help}")
    p.add_argument("--from-fits", nargs="*", default=[], metavar="MODEL=PATH",
                   help="the fits files of the spec's from_models (for a family that reads other models' fits)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    if outs != "":
        p.add_argument("--out", type=Path, required=True, nargs=outs)


def _add_settings(p: argparse.ArgumentParser, step: str) -> None:
    paths, example = SETTINGS[step]
    p.add_argument("--settings", required=True, metavar="JSON",
                   help=f"the params.yaml sections {', '.join(paths)} as one JSON object keyed by their dotted "
                        f"paths, e.g. '{example}'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tbdencoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch / BLAS")
    steps = parser.add_subparsers(dest="step", required=True)

    sim = steps.add_parser("simulate", help="write a simulated dataset").add_subparsers(dest="modality", required=True)
    p = sim.add_parser("fmri", help="Algonauts 2023 layout from a known ground truth")
    p.add_argument("--out-dir", type=Path, required=True)
    _add_settings(p, "simulate fmri")
    p.set_defaults(func=_simulate_fmri)

    p = sim.add_parser("meg", help="AVS-style free-viewing MEG (FIF, metadata.csv, scenes) from a known ground truth")
    p.add_argument("--out-dir", type=Path, required=True)
    _add_settings(p, "simulate meg")
    p.set_defaults(func=_simulate_meg)

    p = steps.add_parser("prepare-fmri", help="Algonauts 2023 subject -> responses.h5 + stimuli.h5")
    p.add_argument("--dataset-dir", type=Path, required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--responses-out", type=Path, required=True)
    p.add_argument("--stimuli-out", type=Path, required=True)
    _add_settings(p, "prepare-fmri")
    p.set_defaults(func=_prepare_fmri)

    p = steps.add_parser("meg-fixations", help="one subject's fixations from an AVS metadata.csv -> fixations.tsv")
    p.add_argument("--dataset-dir", type=Path, required=True)
    p.add_argument("--subject", type=int, required=True, help="metadata subject number")
    p.add_argument("--out", type=Path, required=True)
    _add_settings(p, "meg-fixations")
    p.set_defaults(func=_meg_fixations)

    p = steps.add_parser("preprocess-meg", help="raw FIF -> fixation-locked gradiometer epochs (epochs.h5)")
    p.add_argument("--fixations", type=Path, required=True)
    p.add_argument("--dataset-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    _add_settings(p, "preprocess-meg")
    p.set_defaults(func=_preprocess_meg)

    p = steps.add_parser("meg-crops", help="foveal + parafoveal crops of every fixation -> stimuli.h5")
    p.add_argument("--fixations", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    _add_settings(p, "meg-crops")
    p.set_defaults(func=_meg_crops)

    p = steps.add_parser("features", help="multi-layer backbone features of a stimuli file")
    p.add_argument("--stimuli", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _add_settings(p, "features")
    p.set_defaults(func=_features)

    p = steps.add_parser("fit", help="fit one model for one subject x hemisphere")
    p.add_argument("--features", type=Path, nargs="+", required=True, help="one features file per backbone of the model")
    p.add_argument("--responses", type=Path, required=True)
    p.add_argument("--hemisphere", required=True, choices=["lh", "rh"])
    _add_model_args(p, "a models.<name> entry of params.yaml with the fit section's keys")
    p.set_defaults(func=_fit)

    p = steps.add_parser("fit-joint", help="one model of several subjects (e.g. subject_adapters) for a hemisphere "
                                           "of every subject at once")
    p.add_argument("--features", type=Path, nargs="+", required=True,
                   help="per subject (in the order of --responses) one features file per backbone of the model")
    p.add_argument("--responses", type=Path, nargs="+", required=True, help="one responses.h5 per subject")
    p.add_argument("--hemisphere", required=True, choices=["lh", "rh"])
    _add_model_args(p, "a models.<name> entry of params.yaml with the fit section's keys", outs="+")
    p.set_defaults(func=_fit_joint)

    recipe = steps.add_parser("all-for-one", help="a stage of an All-for-One recipe (seed 001), one hemisphere of every "
                                                  "training subject").add_subparsers(dest="modality", required=True)
    stages = {
        "groups": ("a scheme's vertex groups per subject", _afo_groups),
        "member": ("one small model on one group of every subject's vertices (its best epochs kept)", _afo_member),
        "soup": ("each member of a scheme souped and its predictions stitched", _afo_soup),
        "teacher": ("the schemes' stitched predictions averaged into the teacher; its and the whole-brain model's "
                    "fits files", _afo_teacher),
        "student": ("one all-vertex model distilled from the teacher", _afo_student),
    }
    for name, (help_text, func) in stages.items():
        p = recipe.add_parser(name, help=help_text)
        p.add_argument("--recipe-name", required=True)
        p.add_argument("--settings", required=True, metavar="JSON",
                       help="the part of the recipe's params.yaml section the stage reads (recipes.job_settings), as "
                            "one JSON object keyed by the section's dotted path, e.g. "
                            "'{\"fmri.all_for_one.afo\": {\"neck\": \"topy\", \"random\": {\"n_parts\": 3, "
                            "\"seeds\": [0]}}}'")
        p.add_argument("--responses", type=Path, nargs="+", required=True, help="one responses.h5 per subject")
        p.add_argument("--hemisphere", required=True, choices=["lh", "rh"])
        if name != "groups":
            p.add_argument("--features", type=Path, nargs="+", required=True,
                           help="per subject (in the order of --responses) one features file per backbone")
            p.add_argument("--spec", required=True, help="the neck_readout spec (recipes.model_spec)")
            p.add_argument("--neck-fits", type=Path, nargs="+", required=True, help="the neck's fits file per subject")
            p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        if name in ("groups", "member", "soup"):
            p.add_argument("--scheme", required=True)
        p.add_argument("--out", type=Path, required=True, nargs="+" if name == "student" else None)
        p.set_defaults(func=func)
    recipe.choices["groups"].add_argument("--whole-soup", type=Path, help="clusters: the first whole-brain soup")
    recipe.choices["member"].add_argument("--group", required=True)
    recipe.choices["member"].add_argument("--groups", type=Path, help="the scheme's groups file (none: whole brain)")
    recipe.choices["soup"].add_argument("--members", type=Path, nargs="+", required=True,
                                        help="the scheme's member files, in its groups' order")
    recipe.choices["teacher"].add_argument("--soups", type=Path, nargs="+", required=True,
                                           help="every scheme's soup, in the recipe's order (whole-brain first)")
    recipe.choices["teacher"].add_argument("--teacher-fits", type=Path, nargs="+", required=True)
    recipe.choices["teacher"].add_argument("--whole-fits", type=Path, nargs="+", required=True)
    recipe.choices["student"].add_argument("--teacher", type=Path, required=True)

    p = steps.add_parser("predict", help="predict the stimuli of a features file with a stored fit (fMRI or MEG)")
    p.add_argument("--fit", type=Path, required=True,
                   help="a results/fits/<subject>/<hemi>/<model>.h5 or results/fits/meg/<sub>/<model>.h5")
    p.add_argument("--features", type=Path, nargs="+", required=True,
                   help="features of the stimuli to predict (the model's backbones, one file each)")
    p.add_argument("--train-features", type=Path, nargs="+", default=None,
                   help="default: the features the model was fitted on")
    p.add_argument("--responses", type=Path, default=None, help="default: the responses.h5 the model was fitted on")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_predict)

    for name, func, help_text in (
        ("fit-meg", _fit_meg, "time-resolved ridge for one MEG subject, cross-validated by scene"),
        ("fit-meg-heldout", _fit_meg_heldout, "predict a held-out MEG subject from the training subjects"),
    ):
        p = steps.add_parser(name, help=help_text)
        p.add_argument("--epochs", type=Path, required=True)
        p.add_argument("--features", type=Path, required=True)
        if func is _fit_meg_heldout:
            p.add_argument("--train-epochs", type=Path, nargs="+", required=True)
            p.add_argument("--train-features", type=Path, nargs="+", required=True)
        else:
            p.add_argument("--cohort-epochs", type=Path, nargs="+", default=None,
                           help="every training subject's epochs.h5 (this one's among them): folds over all their "
                                "scenes, those of fit-meg-joint (default: the subject's own scenes)")
        _add_model_args(p, "a meg.models.<name> entry of params.yaml with the meg.fit section's keys")
        p.set_defaults(func=func)

    p = steps.add_parser("fit-meg-joint", help="one model of several subjects (e.g. subject_adapters) for the MEG "
                                               "training subjects at once, folds over all their scenes")
    p.add_argument("--epochs", type=Path, nargs="+", required=True, help="every training subject's epochs.h5")
    p.add_argument("--features", type=Path, nargs="+", required=True, help="their crop features, in that order")
    _add_model_args(p, "a meg.models.<name> entry of params.yaml with the meg.fit section's keys", outs="+")
    p.set_defaults(func=_fit_meg_joint)

    p = steps.add_parser("decode-meg", help="the decoding direction: every training subject's MEG windows -> the "
                                            "foveal crop's image embedding, out of fold (one decoding model)")
    p.add_argument("--epochs", type=Path, nargs="+", required=True, help="every training subject's epochs.h5")
    p.add_argument("--features", type=Path, nargs="+", required=True, help="their crop features, in that order")
    _add_model_args(p, "a meg.decoding.models.<name> entry of params.yaml with the meg.fit section's keys", outs="+")
    _add_settings(p, "decode-meg")
    p.set_defaults(func=_decode_meg)

    p = steps.add_parser("decode-meg-heldout", help="the decoding direction for a held-out MEG subject: decoded by "
                                                    "models trained on the training subjects, folds of its scenes")
    p.add_argument("--epochs", type=Path, required=True)
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--train-epochs", type=Path, nargs="+", required=True)
    p.add_argument("--train-features", type=Path, nargs="+", required=True)
    _add_model_args(p, "a meg.decoding.models.<name> entry of params.yaml with the meg.fit section's keys")
    _add_settings(p, "decode-meg")
    p.set_defaults(func=_decode_meg_heldout)

    p = steps.add_parser("decode-fmri", help="the decoding direction: every subject's vertices -> the image's "
                                             "embedding, trained on the training images, the scored ones decoded")
    p.add_argument("--responses", type=Path, nargs="+", required=True, help="every subject's responses.h5")
    p.add_argument("--features", type=Path, nargs="+", required=True, help="their image features, in that order")
    _add_model_args(p, "an fmri.decoding.models.<name> entry of params.yaml with the fit section's keys", outs="+")
    p.set_defaults(func=_decode_fmri)

    p = steps.add_parser("evaluate-decoding", help="retrieval over time of one subject's decoded embeddings (top-1, "
                                                   "top-5, median rank, chance), metrics and a figure")
    p.add_argument("--decodings", type=Path, nargs="+", required=True, help="the subject's decoding files")
    p.add_argument("--metrics-out", type=Path, required=True)
    p.add_argument("--figure-out", type=Path, required=True)
    _add_settings(p, "evaluate-decoding")
    p.set_defaults(func=_evaluate_decoding)

    p = steps.add_parser("kshot-meg", help="a held-out subject from k of its fixations: a model of several "
                                           "subjects calibrated on them, against pooled and per-subject ridge")
    p.add_argument("--epochs", type=Path, required=True)
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--train-epochs", type=Path, nargs="+", required=True)
    p.add_argument("--train-features", type=Path, nargs="+", required=True)
    p.add_argument("--metrics-out", type=Path, required=True)
    p.add_argument("--figure-out", type=Path, required=True)
    _add_model_args(p, "a meg.models.<name> entry of params.yaml with the meg.fit section's keys", outs="")
    _add_settings(p, "kshot-meg")
    p.set_defaults(func=_kshot_meg)

    p = steps.add_parser("kshot-fmri", help="an fMRI subject left out of training from k of its images: a model of "
                                            "several subjects calibrated on them, against ridge on the same images")
    p.add_argument("--features", type=Path, nargs="+", required=True, help="the held-out subject's (one per backbone)")
    p.add_argument("--responses", type=Path, required=True, help="the held-out subject's responses.h5")
    p.add_argument("--train-features", type=Path, nargs="+", required=True,
                   help="per training subject (in the order of --train-responses) one file per backbone")
    p.add_argument("--train-responses", type=Path, nargs="+", required=True)
    p.add_argument("--metrics-out", type=Path, required=True)
    p.add_argument("--figure-out", type=Path, required=True)
    _add_model_args(p, "a models.<name> entry of params.yaml with the fit section's keys", outs="")
    _add_settings(p, "kshot-fmri")
    p.set_defaults(func=_kshot_fmri)

    p = steps.add_parser("evaluate-meg", help="score a MEG subject's fits; noise ceiling, figures, metrics")
    p.add_argument("--epochs", type=Path, required=True)
    p.add_argument("--fits", type=Path, nargs="+", required=True)
    p.add_argument("--metrics-out", type=Path, required=True)
    p.add_argument("--scores-out", type=Path, required=True)
    p.add_argument("--figure-r-time", type=Path, required=True)
    p.add_argument("--figure-topomap", type=Path, required=True)
    p.add_argument("--figure-dual-vs-foveal", type=Path, required=True)
    p.add_argument("--figure-preferred-block", type=Path, required=True,
                   help="each block's weight at the peak (models with block weights)")
    p.add_argument("--figure-training", type=Path, required=True,
                   help="training curves per outer fold (gradient-trained models)")
    _add_settings(p, "evaluate-meg")
    p.set_defaults(func=_evaluate_meg)

    p = steps.add_parser("evaluate", help="score a subject's fits; metrics, figure, submission")
    p.add_argument("--responses", type=Path, required=True)
    p.add_argument("--fits", type=Path, nargs="+", required=True)
    p.add_argument("--metrics-out", type=Path, required=True)
    p.add_argument("--table-out", type=Path, required=True)
    p.add_argument("--scores-out", type=Path, required=True, help="per-vertex r and score (HDF5)")
    p.add_argument("--figure-out", type=Path, required=True)
    p.add_argument("--submission-dir", type=Path, required=True)
    p.add_argument("--figure-preferred-block", type=Path, required=True,
                   help="preferred block per ROI (models with block weights)")
    p.add_argument("--figure-training", type=Path, required=True, help="training curves (gradient-trained models)")
    p.add_argument("--figure-brain-scores", type=Path, required=True, help="every model's score per vertex on the cortex")
    p.add_argument("--figure-brain-selectors", type=Path, required=True,
                   help="FactorTopy models' layer colouring, retinotopy and scale on the cortex")
    _add_settings(p, "evaluate")
    p.set_defaults(func=_evaluate)

    p = steps.add_parser("merge-metrics", help="merge per-subject metrics into results/metrics.json")
    p.add_argument("--inputs", type=Path, nargs="*", default=[], help="per-subject fMRI metrics")
    p.add_argument("--meg-inputs", type=Path, nargs="*", default=[], help="per-subject MEG metrics")
    p.add_argument("--kshot-inputs", type=Path, nargs="*", default=[], help="held-out MEG subjects' k-shot metrics")
    p.add_argument("--fmri-kshot-inputs", type=Path, nargs="*", default=[],
                   help="held-out fMRI subjects' k-shot metrics")
    p.add_argument("--decoding-inputs", type=Path, nargs="*", default=[], help="per-subject MEG decoding metrics")
    p.add_argument("--fmri-decoding-inputs", type=Path, nargs="*", default=[], help="per-subject fMRI decoding metrics")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_merge_metrics)

    p = steps.add_parser("validate-params", help="check a params.yaml against the schema")
    p.add_argument("params", type=Path)
    p.set_defaults(func=_validate_params)

    p = steps.add_parser("dvc-yaml", help="write dvc.yaml (one stage per phase) from params.yaml")
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--out", type=Path, default=Path("dvc.yaml"))
    p.add_argument("--check", action="store_true", help="only check that dvc.yaml matches params.yaml")
    p.set_defaults(func=_dvc_yaml)

    p = steps.add_parser("dvc-stage", help="run a DVC stage's Snakemake command (dvc.yaml's cmd), forcing only "
                                           "the rules whose package code changed since dvc.lock")
    p.add_argument("--stage", required=True, help="the stage's name in dvc.yaml (its record in dvc.lock)")
    p.add_argument("--rules", nargs="+", required=True, help="the Snakemake rules the stage runs")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the Snakemake command line")
    p.set_defaults(func=_dvc_stage)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    step = " ".join(filter(None, [args.step, getattr(args, "modality", None)]))  # "simulate meg", "fit"
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        args.func(args, *load_step(step))
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"tbdencoder {step}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
