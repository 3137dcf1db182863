"""FactorTopy over several subjects: selectors per subject against selectors shared through fsaverage positions.

Three subjects of the topographic simulator (simulate.topographic; each subject's occipital pole jittered by about
3 degrees of arc, so one fsaverage position means slightly different cortex in each, as in real subjects), each
with its own images, fitted at once both ways with the same settings; prints, per subject, the median error of the
space selector (image widths) and the share of vertices whose most-selected layer is the driving one.

    python scripts/compare_factortopy_selectors.py [images per subject ...]   (default: 60 120; ~10 min on 2 cores)
"""

import sys

import numpy as np

from tbdencoder.features.featureset import FeatureSet
from tbdencoder.models.factortopy import FactorTopy
from tbdencoder.simulate.topographic import simulate_topographic

SUBJECTS = ("a", "b", "c")


def features(problem) -> FeatureSet:
    names, data, shapes = [], [], []
    for k, maps in enumerate(problem.maps):
        names += [f"layer{k}/map", f"layer{k}/global"]
        data += [maps.reshape(len(maps), -1), maps.mean((1, 2))]
        shapes += [maps.shape[1:], None]
    return FeatureSet(names, data, shapes)


def compare(n_images: int) -> None:
    problems = {s: simulate_topographic(n_images, 300, seed=k + 1) for k, s in enumerate(SUBJECTS)}
    X = FeatureSet.stack([features(problems[s]) for s in SUBJECTS])
    for selectors in ("per_subject", "shared"):
        model = FactorTopy(width=32, hidden_units=64, max_epochs=200, patience=20, regulariser_steps=300,
                           selectors=selectors, device="cpu")
        model.fit(X, {s: problems[s].Y for s in SUBJECTS}, subjects=np.repeat(SUBJECTS, n_images),
                  targets={s: {"positions": problems[s].positions} for s in SUBJECTS})
        errors, layers = [], []
        for s in SUBJECTS:
            state, truth = model.subject_state(s), problems[s]
            errors.append(np.median(np.hypot(state["space_x"] - truth.rf_x, state["space_y"] - truth.rf_y)))
            layers.append((state["layer_weights"].argmax(1) == truth.layer).mean())
        print(f"{n_images} images per subject, selectors {selectors:11s}: space error "
              f"{' / '.join(f'{e:.3f}' for e in errors)}, driving layer {' / '.join(f'{a:.2f}' for a in layers)}, "
              f"{len(model.curves_['train_loss'])} epochs", flush=True)


if __name__ == "__main__":
    for n in [int(arg) for arg in sys.argv[1:]] or [60, 120]:
        compare(n)
