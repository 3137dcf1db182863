if FMRI:

    rule evaluate:
        """Per-vertex r and challenge score, per-ROI medians, figures and submission files for one subject."""
        input:
            responses="results/fmri/{subject}/responses.h5",
            fits=expand("results/fits/{{subject}}/{hemi}/{model}.h5", hemi=HEMISPHERES, model=EVALUATED),
        output:
            metrics="results/metrics/{subject}.json",
            table="results/tables/{subject}.tsv",
            scores="results/scores/{subject}.h5",
            figure=report(
                "results/figures/{subject}_roi_scores.png",
                caption="../report/roi_scores.rst",
                category="fMRI",
                subcategory="{subject}",
                labels={"subject": "{subject}", "figure": "per-ROI scores"},
            ),
            preferred_block=report(
                "results/figures/{subject}_preferred_block.png",
                caption="../report/roi_preferred_block.rst",
                category="fMRI",
                subcategory="{subject}",
                labels={"subject": "{subject}", "figure": "preferred block"},
            ),
            training=report(
                "results/figures/{subject}_training.png",
                caption="../report/training.rst",
                category="fMRI",
                subcategory="{subject}",
                labels={"subject": "{subject}", "figure": "training"},
            ),
            brain_scores=report(
                "results/figures/{subject}_brain_scores.png",
                caption="../report/brain_scores.rst",
                category="fMRI",
                subcategory="{subject}",
                labels={"subject": "{subject}", "figure": "brain map: scores"},
            ),
            brain_selectors=report(
                "results/figures/{subject}_brain_selectors.png",
                caption="../report/brain_selectors.rst",
                category="fMRI",
                subcategory="{subject}",
                labels={"subject": "{subject}", "figure": "brain map: FactorTopy selectors"},
            ),
            submission=expand("results/submission/{{subject}}/{hemi}_pred_test.npy", hemi=HEMISPHERES),
        params:
            submission_dir="results/submission/{subject}",
            settings=settings("fmri.evaluation"),
        log:
            "logs/evaluate/{subject}.log",
        conda:
            "../envs/tbdencoder.yaml"
        shell:
            "tbdencoder evaluate --responses {input.responses} --fits {input.fits}"
            " --metrics-out {output.metrics} --table-out {output.table} --scores-out {output.scores} --figure-out {output.figure}"
            " --submission-dir {params.submission_dir} --figure-preferred-block {output.preferred_block}"
            " --figure-training {output.training} --figure-brain-scores {output.brain_scores}"
            " --figure-brain-selectors {output.brain_selectors} --settings {params.settings} > {log} 2>&1"



rule merge_metrics:
    """results/metrics.json: all fMRI subjects plus the per-model mean over subjects, and the MEG summary."""
    input:
        fmri=expand("results/metrics/{subject}.json", subject=SUBJECTS),
        meg=expand("results/metrics/meg_{subject}.json", subject=MEG_SUBJECTS + MEG_HELDOUT),
        kshot=expand("results/metrics/kshot_meg_{subject}_{model}.json", subject=MEG_HELDOUT, model=MEG_CALIBRATED),
        fmri_kshot=expand("results/metrics/kshot_fmri_{subject}_{model}.json", subject=HELDOUT, model=CALIBRATED),
        decoding=expand("results/metrics/decoding_meg_{subject}.json",
                        subject=MEG_SUBJECTS + MEG_HELDOUT if MEG_DECODERS else []),
        fmri_decoding=expand("results/metrics/decoding_fmri_{subject}.json", subject=SUBJECTS if DECODERS else []),
    output:
        "results/metrics.json",
    log:
        "logs/merge_metrics.log",
    conda:
        "../envs/tbdencoder.yaml"
    shell:
        "tbdencoder merge-metrics --inputs {input.fmri} --meg-inputs {input.meg} --kshot-inputs {input.kshot}"
        " --fmri-kshot-inputs {input.fmri_kshot} --decoding-inputs {input.decoding}"
        " --fmri-decoding-inputs {input.fmri_decoding} --out {output} > {log} 2>&1"
