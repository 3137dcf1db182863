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


def _prepare_fmri(a: argparse.Namespace) -> None:
    from tbdencoder.data.prepare_fmri import prepare_fmri

    prepare_fmri(a.dataset_dir, a.subject, a.hemispheres, a.roi_classes, a.heldout_fraction, a.split_seed,
                 a.responses_out, a.stimuli_out)


def _features(a: argparse.Namespace) -> None:
    from tbdencoder.features.extract import extract_features

    extract_features(
        a.stimuli, a.out, model_name=a.model, pretrained=a.pretrained, random_init=a.random_init, layers=a.layers,
        grid_size=a.grid_size, batch_size=a.batch_size, num_workers=a.num_workers, device=a.device, seed=a.seed,
        cache_dir=a.cache_dir,
    )


def _fit(a: argparse.Namespace) -> None:
    from tbdencoder.fit import fit_model

    fit_model(a.features, a.responses, a.hemisphere, a.model_name, a.family, a.backbone, a.layers, a.tokens,
              a.alphas, a.cv_folds, a.seed, a.out, roi_class=a.roi_class, device=a.device)


def _evaluate(a: argparse.Namespace) -> None:
    from tbdencoder.evaluate.evaluate_fmri import evaluate_subject

    evaluate_subject(a.responses, a.fits, a.metrics_out, a.table_out, a.scores_out, a.figure_out, a.submission_dir,
                     a.submission_model, a.figure_roi_classes)


def _merge_metrics(a: argparse.Namespace) -> None:
    from tbdencoder.evaluate.evaluate_fmri import merge_metrics

    merge_metrics(a.inputs, a.out)


def _validate_params(a: argparse.Namespace) -> None:
    from tbdencoder.config import load_params

    load_params(a.params)
    print(f"{a.params}: valid")


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

    p = steps.add_parser("features", help="multi-layer backbone features of a stimuli file")
    p.add_argument("--stimuli", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", required=True, help="open_clip model name, e.g. ViT-B-32")
    p.add_argument("--pretrained", default=None, help="open_clip tag or local checkpoint path")
    p.add_argument("--random-init", action="store_true", help="random weights (smoke tests only)")
    p.add_argument("--layers", type=int, nargs="+", required=True)
    p.add_argument("--grid-size", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_features)

    p = steps.add_parser("fit", help="fit one model for one subject x hemisphere")
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--responses", type=Path, required=True)
    p.add_argument("--hemisphere", required=True, choices=["lh", "rh"])
    p.add_argument("--model-name", required=True)
    p.add_argument("--family", required=True)
    p.add_argument("--backbone", required=True)
    p.add_argument("--layers", type=int, nargs="+", required=True)
    p.add_argument("--tokens", nargs="+", required=True, choices=["cls", "grid"])
    p.add_argument("--roi-class", default=None)
    p.add_argument("--alphas", type=float, nargs="+", required=True)
    p.add_argument("--cv-folds", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_fit)

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
    p.set_defaults(func=_evaluate)

    p = steps.add_parser("merge-metrics", help="merge per-subject metrics into results/metrics.json")
    p.add_argument("--inputs", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_merge_metrics)

    p = steps.add_parser("validate-params", help="check a params.yaml against the schema")
    p.add_argument("params", type=Path)
    p.set_defaults(func=_validate_params)
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
