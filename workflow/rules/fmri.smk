rule prepare_fmri:
    """Check one subject's Algonauts 2023 files; write its responses and stimuli."""
    input:
        dataset_dir(),
    output:
        responses="results/fmri/{subject}/responses.h5",
        stimuli="results/fmri/{subject}/stimuli.h5",
    params:
        hemispheres=join(HEMISPHERES),
        roi_classes=join(FMRI["roi_classes"]),
        heldout_fraction=FMRI["heldout_fraction"],
        split_seed=FMRI["split_seed"],
    log:
        "logs/prepare_fmri/{subject}.log",
    conda:
        "../envs/tbdencoder.yaml"
    shell:
        "tbdencoder prepare-fmri --dataset-dir {input} --subject {wildcards.subject}"
        " --hemispheres {params.hemispheres} --roi-classes {params.roi_classes}"
        " --heldout-fraction {params.heldout_fraction} --split-seed {params.split_seed}"
        " --responses-out {output.responses} --stimuli-out {output.stimuli} > {log} 2>&1"
