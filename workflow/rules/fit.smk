rule fit:
    """One encoding model of any family for one subject x hemisphere (fitted on the training rows)."""
    input:
        features=model_features,
        responses="results/fmri/{subject}/responses.h5",
        from_fits=lambda wc: list(model_fits(wc).values()),
    output:
        "results/fits/{subject}/{hemi}/{model}.h5",
    params:
        spec=lambda wc: model_spec(MODELS[wc.model], FMRI["fit"]),
        from_fits=from_fits_args,
    log:
        "logs/fit/{subject}_{hemi}_{model}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/fit/{subject}_{hemi}_{model}.tsv"
    threads: 2
    resources:
        device="auto",  # where a family computes (ridge solver, gradient training); set by profiles
    shell:
        "tbdencoder --threads {threads} fit --features {input.features} --responses {input.responses}"
        " --hemisphere {wildcards.hemi} --model-name {wildcards.model} --spec {params.spec} {params.from_fits}"
        " --device {resources.device}"
        " --out {output}"
        " > {log} 2>&1"
