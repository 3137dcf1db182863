"""`tbdencoder <step> ...`: one subcommand per pipeline step; values come from the caller, never from params.yaml."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _simulate_fmri(a: argparse.Namespace) -> None:
    from tbdencoder.simulate.fmri import simulate_fmri

    simulate_fmri(
        a.out_dir, subjects=a.subjects, n_vertices=a.n_vertices, n_train_images=a.n_train_images,
        n_test_images=a.n_test_images, n_shared_images=a.n_shared_images, image_size_px=a.image_size_px,
        n_repeats=a.n_repeats, seed=a.seed,
    )


def _screen(a: argparse.Namespace):
    from tbdencoder.data.crops import ScreenGeometry

    return ScreenGeometry(a.screen_width_px, a.screen_height_px, a.screen_width_cm, a.viewing_distance_cm)


def _simulate_meg(a: argparse.Namespace) -> None:
    from tbdencoder.simulate.meg import simulate_meg

    simulate_meg(
        a.out_dir, subjects=a.subjects, n_sessions=a.n_sessions, n_trials_per_session=a.n_trials_per_session,
        n_scenes=a.n_scenes, scene_size_px=tuple(a.scene_size_px), repeat_fraction=a.repeat_fraction,
        sfreq_hz=a.sfreq_hz, latency_s=a.latency_s, parafoveal_gain=a.parafoveal_gain, snr=a.snr,
        line_freq_hz=a.line_freq_hz, screen=_screen(a), crop_dva=a.crop_dva, seed=a.seed,
    )


def _meg_fixations(a: argparse.Namespace) -> None:
    from tbdencoder.data.avs import prepare_fixations

    prepare_fixations(a.dataset_dir, a.subject, a.out, on_bad=a.on_bad, screen=_screen(a))


def _preprocess_meg(a: argparse.Namespace) -> None:
    from tbdencoder.data.meg import preprocess_meg

    baseline = None if not a.baseline_s else tuple(None if b.lower() == "none" else float(b) for b in a.baseline_s)
    preprocess_meg(
        a.fixations, a.dataset_dir, a.out, line_freq_hz=a.line_freq_hz, l_freq_hz=a.l_freq_hz, h_freq_hz=a.h_freq_hz,
        sfreq_hz=a.sfreq_hz, tmin_s=a.tmin_s, tmax_s=a.tmax_s, baseline_s=baseline,
        reject_grad=None if a.reject_grad in ("none", "None") else float(a.reject_grad), on_bad=a.on_bad,
        n_jobs=a.threads or 1,
    )


def _meg_crops(a: argparse.Namespace) -> None:
    from tbdencoder.data.crop_stimuli import write_crop_stimuli

    write_crop_stimuli(a.fixations, a.out, dva=a.dva, screen=_screen(a), padding=a.padding, pad_value=a.pad_value)


def _spec(a: argparse.Namespace, modality: str) -> dict:
    from tbdencoder.config import parse_model_spec

    return parse_model_spec(a.spec, modality)


def _fit_meg(a: argparse.Namespace) -> None:
    from tbdencoder.fit.meg import fit_meg_subject

    fit_meg_subject(a.epochs, a.features, a.out, model_name=a.model_name, spec=_spec(a, "meg"), device=a.device)


def _fit_meg_heldout(a: argparse.Namespace) -> None:
    from tbdencoder.fit.meg import fit_meg_heldout

    fit_meg_heldout(a.train_epochs, a.train_features, a.epochs, a.features, a.out, model_name=a.model_name,
                    spec=_spec(a, "meg"), device=a.device)


def _evaluate_meg(a: argparse.Namespace) -> None:
    from tbdencoder.evaluate.evaluate_meg import evaluate_meg_subject

    figures = {"r_time": a.figure_r_time, "topomap": a.figure_topomap, "dual_vs_foveal": a.figure_dual_vs_foveal,
               "preferred_block": a.figure_preferred_block, "training": a.figure_training}
    evaluate_meg_subject(a.epochs, a.fits, a.metrics_out, a.scores_out, figures, max_distance_px=a.max_distance_px,
                         min_pairs=a.min_pairs, n_best_sensors=a.n_best_sensors, compare=tuple(a.compare))


def _prepare_fmri(a: argparse.Namespace) -> None:
    from tbdencoder.data.prepare_fmri import prepare_fmri

    prepare_fmri(a.dataset_dir, a.subject, a.hemispheres, a.roi_classes, a.heldout_fraction, a.split_seed,
                 a.responses_out, a.stimuli_out)


def _features(a: argparse.Namespace) -> None:
    from tbdencoder.features.extract import extract_features

    extract_features(
        a.stimuli, a.out, library=a.library, model_name=a.model, pretrained=a.pretrained, random_init=a.random_init,
        layers=[int(layer) if layer.isdigit() else layer for layer in a.layers], grid_size=a.grid_size,
        map_size=a.map_size, embedding=a.embedding, batch_size=a.batch_size, num_workers=a.num_workers,
        device=a.device, seed=a.seed, cache_dir=a.cache_dir,
    )


def _fit(a: argparse.Namespace) -> None:
    from tbdencoder.fit.fmri import fit_fmri

    fit_fmri(a.features, a.responses, a.hemisphere, a.model_name, _spec(a, "fmri"), a.out, device=a.device)


def _predict(a: argparse.Namespace) -> None:
    import h5py

    with h5py.File(a.fit, "r") as h5:
        meg = "scheme" in h5.attrs  # MEG fits say how their folds were made
    if meg:
        from tbdencoder.fit.meg import predict_meg_stimuli

        if len(a.features) != 1 or a.train_features or a.responses:
            raise ValueError(f"{a.fit} is a MEG fit: give one --features file (crop features) and neither "
                             "--train-features nor --responses (the fit names its training files)")
        predict_meg_stimuli(a.fit, a.features[0], a.out, device=a.device)
    else:
        from tbdencoder.fit.fmri import predict_stimuli

        predict_stimuli(a.fit, a.features, a.out, train_features=a.train_features, responses_path=a.responses,
                        device=a.device)


def _evaluate(a: argparse.Namespace) -> None:
    from tbdencoder.evaluate.evaluate_fmri import evaluate_subject

    evaluate_subject(a.responses, a.fits, a.metrics_out, a.table_out, a.scores_out, a.figure_out, a.submission_dir,
                     a.submission_model, a.figure_roi_classes, figure_preferred_block_out=a.figure_preferred_block,
                     figure_training_out=a.figure_training)


def _merge_metrics(a: argparse.Namespace) -> None:
    from tbdencoder.evaluate.merge import merge_metrics

    merge_metrics(a.inputs, a.out, meg_inputs=a.meg_inputs)


def _validate_params(a: argparse.Namespace) -> None:
    from tbdencoder.config import load_params

    load_params(a.params)
    print(f"{a.params}: valid")


def _dvc_yaml(a: argparse.Namespace) -> None:
    from tbdencoder.dvc_stages import write_dvc_yaml

    if write_dvc_yaml(a.params, a.out, check=a.check):
        print(f"{a.out}: rewritten from {a.params}")


def _add_model_args(p: argparse.ArgumentParser, spec_help: str) -> None:
    p.add_argument("--model-name", required=True)
    p.add_argument("--spec", required=True, help=f"the model as one JSON object: {spec_help}")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, required=True)


def _add_screen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--screen-width-px", type=int, required=True)
    p.add_argument("--screen-height-px", type=int, required=True)
    p.add_argument("--screen-width-cm", type=float, required=True)
    p.add_argument("--viewing-distance-cm", type=float, required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tbdencoder", description=__doc__)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch / BLAS")
    steps = parser.add_subparsers(dest="step", required=True)

    sim = steps.add_parser("simulate", help="write a simulated dataset").add_subparsers(dest="modality", required=True)
    p = sim.add_parser("fmri", help="Algonauts 2023 layout from a known ground truth")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--subjects", nargs="+", required=True)
    p.add_argument("--n-vertices", type=int, nargs="+", required=True, help="per hemisphere, one per subject")
    p.add_argument("--n-train-images", type=int, required=True)
    p.add_argument("--n-test-images", type=int, required=True)
    p.add_argument("--n-shared-images", type=int, required=True)
    p.add_argument("--image-size-px", type=int, required=True)
    p.add_argument("--n-repeats", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.set_defaults(func=_simulate_fmri)

    p = sim.add_parser("meg", help="AVS-style free-viewing MEG (FIF, metadata.csv, scenes) from a known ground truth")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--subjects", type=int, nargs="+", required=True, help="metadata subject numbers")
    p.add_argument("--n-sessions", type=int, required=True)
    p.add_argument("--n-trials-per-session", type=int, required=True)
    p.add_argument("--n-scenes", type=int, required=True)
    p.add_argument("--scene-size-px", type=int, nargs=2, required=True, metavar=("WIDTH", "HEIGHT"))
    p.add_argument("--repeat-fraction", type=float, required=True)
    p.add_argument("--sfreq-hz", type=float, required=True)
    p.add_argument("--latency-s", type=float, required=True)
    p.add_argument("--parafoveal-gain", type=float, required=True)
    p.add_argument("--snr", type=float, required=True)
    p.add_argument("--line-freq-hz", type=float, required=True)
    p.add_argument("--crop-dva", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    _add_screen_args(p)
    p.set_defaults(func=_simulate_meg)

    p = steps.add_parser("prepare-fmri", help="Algonauts 2023 subject -> responses.h5 + stimuli.h5")
    p.add_argument("--dataset-dir", type=Path, required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--hemispheres", nargs="+", required=True)
    p.add_argument("--roi-classes", nargs="+", required=True)
    p.add_argument("--heldout-fraction", type=float, required=True)
    p.add_argument("--split-seed", type=int, required=True)
    p.add_argument("--responses-out", type=Path, required=True)
    p.add_argument("--stimuli-out", type=Path, required=True)
    p.set_defaults(func=_prepare_fmri)

    p = steps.add_parser("meg-fixations", help="one subject's fixations from an AVS metadata.csv -> fixations.tsv")
    p.add_argument("--dataset-dir", type=Path, required=True)
    p.add_argument("--subject", type=int, required=True, help="metadata subject number")
    p.add_argument("--on-bad", choices=["drop", "error"], required=True)
    _add_screen_args(p)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_meg_fixations)

    p = steps.add_parser("preprocess-meg", help="raw FIF -> fixation-locked gradiometer epochs (epochs.h5)")
    p.add_argument("--fixations", type=Path, required=True)
    p.add_argument("--dataset-dir", type=Path, required=True)
    p.add_argument("--line-freq-hz", type=float, required=True)
    p.add_argument("--l-freq-hz", type=float, required=True)
    p.add_argument("--h-freq-hz", type=float, required=True)
    p.add_argument("--sfreq-hz", type=float, required=True)
    p.add_argument("--tmin-s", type=float, required=True)
    p.add_argument("--tmax-s", type=float, required=True)
    p.add_argument("--baseline-s", nargs="*", default=[], help="start end (seconds or 'none'); nothing: no baseline")
    p.add_argument("--reject-grad", required=True, help="peak-to-peak T/m, or 'none'")
    p.add_argument("--on-bad", choices=["drop", "error"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_preprocess_meg)

    p = steps.add_parser("meg-crops", help="foveal + parafoveal crops of every fixation -> stimuli.h5")
    p.add_argument("--fixations", type=Path, required=True)
    p.add_argument("--dva", type=float, required=True)
    p.add_argument("--padding", choices=["constant", "edge", "drop"], required=True)
    p.add_argument("--pad-value", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    _add_screen_args(p)
    p.set_defaults(func=_meg_crops)

    p = steps.add_parser("features", help="multi-layer backbone features of a stimuli file")
    p.add_argument("--stimuli", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--library", default="open_clip", choices=["open_clip", "timm", "torchvision"])
    p.add_argument("--model", required=True, help="the library's model name, e.g. ViT-B-32, vit_base_patch14_dinov2, alexnet")
    p.add_argument("--pretrained", default=None, help="tag / weights name of the library, or a local checkpoint path")
    p.add_argument("--random-init", action="store_true", help="random weights (smoke tests only)")
    p.add_argument("--layers", nargs="+", required=True, help="1-based ViT blocks, or module paths (features.10)")
    p.add_argument("--grid-size", type=int, required=True)
    p.add_argument("--map-size", type=int, default=None, help="also store unpooled maps, pooled to at most this size")
    p.add_argument("--embedding", action="store_true", help="also store the model's output embedding")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_features)

    p = steps.add_parser("fit", help="fit one model for one subject x hemisphere")
    p.add_argument("--features", type=Path, nargs="+", required=True, help="one features file per backbone of the model")
    p.add_argument("--responses", type=Path, required=True)
    p.add_argument("--hemisphere", required=True, choices=["lh", "rh"])
    _add_model_args(p, "a models.<name> entry of params.yaml with the fit section's keys")
    p.set_defaults(func=_fit)

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
        _add_model_args(p, "a meg.models.<name> entry of params.yaml with the meg.fit section's keys")
        p.set_defaults(func=func)

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
    p.add_argument("--max-distance-px", type=float, required=True, help="gaze distance of a repeat pair")
    p.add_argument("--min-pairs", type=int, required=True)
    p.add_argument("--n-best-sensors", type=int, default=10)
    p.add_argument("--compare", nargs=2, default=["foveal", "dual"], metavar=("BASE", "OTHER"))
    p.set_defaults(func=_evaluate_meg)

    p = steps.add_parser("evaluate", help="score a subject's fits; metrics, figure, submission")
    p.add_argument("--responses", type=Path, required=True)
    p.add_argument("--fits", type=Path, nargs="+", required=True)
    p.add_argument("--metrics-out", type=Path, required=True)
    p.add_argument("--table-out", type=Path, required=True)
    p.add_argument("--scores-out", type=Path, required=True, help="per-vertex r and score (HDF5)")
    p.add_argument("--figure-out", type=Path, required=True)
    p.add_argument("--submission-dir", type=Path, required=True)
    p.add_argument("--submission-model", required=True)
    p.add_argument("--figure-roi-classes", nargs="+", required=True)
    p.add_argument("--figure-preferred-block", type=Path, required=True,
                   help="preferred block per ROI (models with block weights)")
    p.add_argument("--figure-training", type=Path, required=True, help="training curves (gradient-trained models)")
    p.set_defaults(func=_evaluate)

    p = steps.add_parser("merge-metrics", help="merge per-subject metrics into results/metrics.json")
    p.add_argument("--inputs", type=Path, nargs="*", default=[], help="per-subject fMRI metrics")
    p.add_argument("--meg-inputs", type=Path, nargs="*", default=[], help="per-subject MEG metrics")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"tbdencoder {args.step}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
