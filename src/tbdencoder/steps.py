"""What each `tbdencoder <step>` runs: its library functions (and classes), as 'module:name'.

cli.py imports them when the step runs and hands them to the step's handler, in this order;
dvc_stages.py makes each DVC stage depend on the import closure of their modules.
"""

from __future__ import annotations

import importlib
from typing import Any

STEPS: dict[str, tuple[str, ...]] = {
    "simulate fmri": ("tbdencoder.simulate.fmri:simulate_fmri",),
    "simulate meg": ("tbdencoder.simulate.meg:simulate_meg", "tbdencoder.data.crops:ScreenGeometry"),
    "prepare-fmri": ("tbdencoder.data.prepare_fmri:prepare_fmri",),
    "meg-fixations": ("tbdencoder.data.avs:prepare_fixations", "tbdencoder.data.crops:ScreenGeometry"),
    "preprocess-meg": ("tbdencoder.data.meg:preprocess_meg",),
    "meg-crops": ("tbdencoder.data.crop_stimuli:write_crop_stimuli", "tbdencoder.data.crops:ScreenGeometry"),
    "features": ("tbdencoder.features.extract:extract_features",),
    "fit": ("tbdencoder.fit.fmri:fit_fmri",),
    "fit-joint": ("tbdencoder.fit.fmri:fit_fmri_joint",),
    "fit-meg": ("tbdencoder.fit.meg:fit_meg_subject",),
    "fit-meg-heldout": ("tbdencoder.fit.meg:fit_meg_heldout",),
    "fit-meg-joint": ("tbdencoder.fit.meg:fit_meg_joint",),
    "decode-meg": ("tbdencoder.fit.decode_meg:decode_meg",),
    "decode-fmri": ("tbdencoder.fit.decode_fmri:decode_fmri",),
    "decode-meg-heldout": ("tbdencoder.fit.decode_meg:decode_meg_heldout",),
    "evaluate-decoding": ("tbdencoder.evaluate.decoding:evaluate_decoding",),
    "kshot-meg": ("tbdencoder.evaluate.kshot_meg:kshot_meg_subject",),
    "kshot-fmri": ("tbdencoder.evaluate.kshot_fmri:kshot_fmri_subject",),
    "all-for-one groups": ("tbdencoder.fit.all_for_one:write_groups",),
    "all-for-one member": ("tbdencoder.fit.all_for_one:train_member",),
    "all-for-one soup": ("tbdencoder.fit.all_for_one:soup_scheme",),
    "all-for-one teacher": ("tbdencoder.fit.all_for_one:make_teacher",),
    "all-for-one student": ("tbdencoder.fit.all_for_one:fit_student",),
    "predict": ("tbdencoder.fit.fmri:predict_stimuli", "tbdencoder.fit.meg:predict_meg_stimuli",
                "tbdencoder.fit.driver:open_fit"),
    "evaluate": ("tbdencoder.evaluate.evaluate_fmri:evaluate_subject",),
    "evaluate-meg": ("tbdencoder.evaluate.evaluate_meg:evaluate_meg_subject", "tbdencoder.data.crops:ScreenGeometry"),
    "merge-metrics": ("tbdencoder.evaluate.merge:merge_metrics",),
    "validate-params": ("tbdencoder.config:load_params",),
    "dvc-yaml": ("tbdencoder.dvc_stages:write_dvc_yaml",),
    "dvc-stage": ("tbdencoder.dvc_stages:run_stage",),
}


def step_modules(step: str) -> list[str]:
    """The modules whose code `step` runs."""
    return [target.split(":")[0] for target in STEPS[step]]


def load_step(step: str) -> list[Any]:
    """The functions (and classes) `step` runs, imported now."""
    return [getattr(importlib.import_module(module), name)
            for module, name in (target.split(":") for target in STEPS[step])]
