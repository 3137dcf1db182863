# Shared names and input functions.
from tbdencoder.config import joint_models, setting, simulation
from tbdencoder.recipes import (evaluated_models, job_settings as recipe_job_settings, model_spec as recipe_model_spec,
                                recipes, schemes as recipe_schemes)
from tbdencoder.data.avs import subject_label

# Each half is optional: a params file without `fmri` runs the MEG
# half only, one without `meg` the fMRI half only.
FMRI = config.get("fmri", {})
SUBJECTS = FMRI.get("subjects", [])
HELDOUT = setting(config, "fmri.heldout_subjects") if FMRI else []  # not trained on: the k-shot comparison
HEMISPHERES = FMRI.get("hemispheres", [])
MODELS = FMRI.get("models", {})
JOINT = joint_models(MODELS)  # fitted on every subject at once (one job per model and hemisphere)
CALIBRATED = joint_models(MODELS, "calibrates")  # also calibrated on a held-out subject's images (k-shot)
RECIPES = recipes(config)  # All-for-One recipes (workflow/rules/all_for_one.smk)
EVALUATED = [*MODELS, *evaluated_models(config)]  # fmri.models and the recipes' models, scored side by side
DECODERS = FMRI.get("decoding", {}).get("models", {})  # vertices -> image embedding, scored by retrieval
BACKBONES = config["features"]["backbones"]
SIMULATE_FMRI = simulation(config, "fmri")  # None: the user's data
MEG = config.get("meg", {})
MEG_SUBJECTS = [subject_label(number) for number in MEG.get("subjects", [])]
MEG_HELDOUT = [subject_label(number) for number in MEG.get("heldout_subjects", [])]
MEG_MODELS = MEG.get("models", {})
MEG_JOINT = joint_models(MEG_MODELS)  # fitted on every training subject at once (one job per model)
MEG_CALIBRATED = joint_models(MEG_MODELS, "calibrates")  # also calibrated on a held-out subject's fixations
MEG_DECODERS = MEG.get("decoding", {}).get("models", {})  # brain -> image embedding, scored by retrieval
SIMULATE_MEG = simulation(config, "meg")
MEG_FIGURES = ["r_time", "topomap", "dual_vs_foveal", "preferred_block", "training"]


wildcard_constraints:
    subject=r"subj\d\d|sub-\d\d",
    modality="fmri|meg",
    hemi="lh|rh",
    model="|".join([*EVALUATED, *MEG_MODELS]),
    recipe="|".join(RECIPES) or "^$",
    backbone="|".join(BACKBONES),


def dataset_dir():
    """The Algonauts 2023 folder: made by rule simulate_fmri when simulating, else the user's data."""
    return FMRI["dataset_dir"]


def model_features(wildcards, subject=None):
    """One features file per backbone of the model (`backbone`: a name, or a list of names combined)."""
    backbone = MODELS[wildcards.model]["backbone"]
    names = [backbone] if isinstance(backbone, str) else backbone
    return [f"results/features/{name}/fmri_{subject or wildcards.subject}.h5" for name in names]



def meg_dataset_dir():
    """The AVS-style folder: made by rule simulate_meg when simulating, else the user's data."""
    return MEG["dataset_dir"]


def subject_number(wildcards):
    """sub-07 -> 7 (the metadata's `subject` value)."""
    return int(wildcards.subject.removeprefix("sub-"))


def settings(*paths):
    """params.yaml sections by dotted path ('meg.preprocessing'), as one shell-quoted JSON argument (--settings)."""
    import json
    import shlex

    sections = {path: setting(config, path) for path in paths}
    return shlex.quote(json.dumps(sections, sort_keys=True))


def meg_model_features(wildcards, subject=None):
    backbone = MEG_MODELS[wildcards.model]["backbone"]
    return f"results/features/{backbone}/meg_{subject or wildcards.subject}.h5"


def model_fits(wildcards):
    """{name: fits file} of the models a model reads (`from_models`), for the same subject (and hemisphere); a
    model of every subject (fit_joint) reads every subject's: {name: [fits file per subject]}."""
    if "hemi" in wildcards.keys():
        names = MODELS[wildcards.model].get("from_models", [])
        if "subject" not in wildcards.keys():
            return {name: [f"results/fits/{subject}/{wildcards.hemi}/{name}.h5" for subject in SUBJECTS]
                    for name in names}
        return {name: f"results/fits/{wildcards.subject}/{wildcards.hemi}/{name}.h5" for name in names}
    names = MEG_MODELS[wildcards.model].get("from_models", [])
    return {name: f"results/fits/meg/{wildcards.subject}/{name}.h5" for name in names}


def from_fits_args(wildcards):
    """--from-fits MODEL=PATH ... for the fit's command (nothing for a model that reads no other fits)."""
    pairs = [f"{name}={path}" for name, paths in model_fits(wildcards).items()
             for path in ([paths] if isinstance(paths, str) else paths)]
    return f"--from-fits {' '.join(pairs)}" if pairs else ""


def model_spec(model, fit):
    """A model's params entry with its modality's fit settings, as one shell-quoted JSON argument."""
    import json
    import shlex

    return shlex.quote(json.dumps({**model, **fit}, sort_keys=True))


def meg_fit_args(wildcards):
    spec = model_spec(MEG_MODELS[wildcards.model], MEG["fit"])
    return f"--model-name {wildcards.model} --spec {spec} {from_fits_args(wildcards)}"

