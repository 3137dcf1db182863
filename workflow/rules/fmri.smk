rule prepare_fmri:
    """Check one subject's Algonauts 2023 files; write its responses and stimuli."""
    input:
        dataset_dir(),
    output:
        responses="results/fmri/{subject}/responses.h5",
        stimuli="results/fmri/{subject}/stimuli.h5",
    params:
        settings=settings("fmri.hemispheres", "fmri.roi_classes", "fmri.heldout_fraction", "fmri.split_seed",
                          "fmri.fsaverage_dir"),
    log:
        "logs/prepare_fmri/{subject}.log",
    conda:
        "../envs/tbdencoder.yaml"
    shell:
        "tbdencoder prepare-fmri --dataset-dir {input} --subject {wildcards.subject}"
        " --responses-out {output.responses} --stimuli-out {output.stimuli} --settings {params.settings} > {log} 2>&1"
