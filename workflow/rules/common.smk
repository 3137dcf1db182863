# Shared names and input functions.
FMRI = config["fmri"]
SUBJECTS = FMRI["subjects"]
HEMISPHERES = FMRI["hemispheres"]
MODELS = config["models"]
BACKBONES = config["features"]["backbones"]
SIMULATE_FMRI = config.get("simulate", {}).get("fmri", {"enabled": False})


wildcard_constraints:
    subject=r"subj\d\d",
    hemi="lh|rh",
    model="|".join(MODELS),
    backbone="|".join(BACKBONES),


def join(values):
    """Space-separated CLI arguments."""
    return " ".join(str(v) for v in values)


def dataset_dir():
    """The Algonauts 2023 folder: made by rule simulate_fmri when simulating, else the user's data."""
    return FMRI["dataset_dir"]


def model_features(wildcards):
    return f"results/features/{MODELS[wildcards.model]['backbone']}/fmri_{wildcards.subject}.h5"
