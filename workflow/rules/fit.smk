rule fit:
    """One encoding model for one subject x hemisphere (alpha per target chosen by CV on the training rows)."""
    input:
        features=model_features,
        responses="results/fmri/{subject}/responses.h5",
    output:
        "results/fits/{subject}/{hemi}/{model}.h5",
    params:
        spec=lambda wc: MODELS[wc.model],
        layers=lambda wc: join(MODELS[wc.model]["layers"]),
        tokens=lambda wc: join(MODELS[wc.model]["tokens"]),
        roi_class=lambda wc: (
            f"--roi-class {MODELS[wc.model]['roi_class']}" if "roi_class" in MODELS[wc.model] else ""
        ),
        alphas=join(config["fit"]["alphas"]),
        fit=config["fit"],
    log:
        "logs/fit/{subject}_{hemi}_{model}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/fit/{subject}_{hemi}_{model}.tsv"
    threads: 2
    shell:
        "tbdencoder --threads {threads} fit --features {input.features} --responses {input.responses}"
        " --hemisphere {wildcards.hemi} --model-name {wildcards.model} --family {params.spec[family]}"
        " --backbone {params.spec[backbone]} --layers {params.layers} --tokens {params.tokens} {params.roi_class}"
        " --alphas {params.alphas} --cv-folds {params.fit[cv_folds]} --seed {params.fit[seed]}"
        " --out {output} > {log} 2>&1"
