# tbdencoder: features -> fit -> evaluate for every fMRI subject x hemisphere x model and every
# MEG subject x model (training subjects by scene-grouped CV, held-out subjects from the others).
# Scientific parameters: params.yaml. Runtime settings: workflow/profiles/.
from snakemake.utils import min_version

from tbdencoder.config import read_params_file, validate_params

min_version("9.0")


configfile: "params.yaml"


for path in workflow.configfiles:  # Snakemake's YAML loading keeps the last of a repeated key silently
    read_params_file(path)
validate_params(config, source="params.yaml (+ --config overrides)")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/evaluate.smk"


if FMRI:

    include: "workflow/rules/fmri.smk"
    include: "workflow/rules/fit.smk"
    include: "workflow/rules/all_for_one.smk"


if MEG:

    include: "workflow/rules/meg.smk"


rule all:
    input:
        "results/metrics.json",
        expand("results/figures/{subject}_roi_scores.png", subject=SUBJECTS),
        expand(
            "results/submission/{subject}/{hemi}_pred_test.npy",
            subject=SUBJECTS,
            hemi=HEMISPHERES,
        ),
        expand("results/figures/meg_{subject}_{figure}.png", subject=MEG_SUBJECTS + MEG_HELDOUT, figure=MEG_FIGURES),
        expand("results/figures/kshot_meg_{subject}_{model}.png", subject=MEG_HELDOUT, model=MEG_CALIBRATED),
        expand("results/figures/kshot_fmri_{subject}_{model}.png", subject=HELDOUT, model=CALIBRATED),
        expand("results/figures/decoding_meg_{subject}.png", subject=MEG_SUBJECTS + MEG_HELDOUT if MEG_DECODERS else []),
        expand("results/figures/decoding_fmri_{subject}.png", subject=SUBJECTS if DECODERS else []),
