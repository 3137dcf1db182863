rule fit:
    """One encoding model of any family for one subject x hemisphere (fitted on the training rows)."""
    input:
        features=model_features,
        responses="results/fmri/{subject}/responses.h5",
        from_fits=lambda wc: list(model_fits(wc).values()),
    output:
        "results/fits/{subject}/{hemi}/{model}.h5",
    wildcard_constraints:
        model="|".join(m for m in MODELS if m not in JOINT) or "^$",
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


rule fit_joint:
    """One model of several subjects (subject_adapters) for a hemisphere of every subject at once: each subject
    its own vertices; one fits file per subject, where evaluation reads them."""
    input:
        features=lambda wc: [path for subject in SUBJECTS for path in model_features(wc, subject)],
        responses=expand("results/fmri/{subject}/responses.h5", subject=SUBJECTS),
        from_fits=lambda wc: [path for paths in model_fits(wc).values() for path in paths],
    output:
        expand("results/fits/{subject}/{{hemi}}/{{model}}.h5", subject=SUBJECTS),
    wildcard_constraints:
        model="|".join(JOINT) or "^$",
    params:
        spec=lambda wc: model_spec(MODELS[wc.model], FMRI["fit"]),
        from_fits=from_fits_args,
    log:
        "logs/fit/joint_{hemi}_{model}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/fit/joint_{hemi}_{model}.tsv"
    priority: 10  # long jobs first, so that short ones fill the cores beside them instead of waiting at the end
    threads: 2
    resources:
        device="auto",
    shell:
        "tbdencoder --threads {threads} fit-joint --features {input.features} --responses {input.responses}"
        " --hemisphere {wildcards.hemi} --model-name {wildcards.model} --spec {params.spec} {params.from_fits}"
        " --device {resources.device} --out {output} > {log} 2>&1"


rule kshot_fmri:
    """An fMRI subject left out of training from k of its images: a model of several subjects fitted on the
    training subjects and calibrated on them, against ridge fitted on the same images alone."""
    input:
        features=lambda wc: model_features(wc, wc.subject),
        responses="results/fmri/{subject}/responses.h5",
        train_features=lambda wc: [path for subject in SUBJECTS for path in model_features(wc, subject)],
        train_responses=expand("results/fmri/{subject}/responses.h5", subject=SUBJECTS),
    output:
        metrics="results/metrics/kshot_fmri_{subject}_{model}.json",
        figure=report(
            "results/figures/kshot_fmri_{subject}_{model}.png",
            caption="../report/kshot.rst",
            category="fMRI",
            subcategory="{subject}",
            labels={"subject": "{subject}", "figure": "k-shot {model}"},
        ),
    wildcard_constraints:
        subject="|".join(HELDOUT) or "^$",
        model="|".join(CALIBRATED) or "^$",
    params:
        spec=lambda wc: model_spec(MODELS[wc.model], FMRI["fit"]),
        settings=settings("fmri.evaluation"),
    log:
        "logs/kshot_fmri/{subject}_{model}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/kshot_fmri/{subject}_{model}.tsv"
    threads: 2
    resources:
        device="auto",
    shell:
        "tbdencoder --threads {threads} kshot-fmri --features {input.features} --responses {input.responses}"
        " --train-features {input.train_features} --train-responses {input.train_responses}"
        " --model-name {wildcards.model} --spec {params.spec} --device {resources.device}"
        " --metrics-out {output.metrics} --figure-out {output.figure} --settings {params.settings} > {log} 2>&1"


rule decode_fmri:
    """The decoding direction, one decoding model: every subject's vertices (both hemispheres) -> the image's
    embedding, trained on the training images, the scored images decoded; one file per subject."""
    input:
        responses=expand("results/fmri/{subject}/responses.h5", subject=SUBJECTS),
        features=lambda wc: [f"results/features/{DECODERS[wc.decoder]['backbone']}/fmri_{subject}.h5"
                             for subject in SUBJECTS],
    output:
        expand("results/decoding/fmri/{subject}/{{decoder}}.h5", subject=SUBJECTS),
    wildcard_constraints:
        decoder="|".join(DECODERS) or "^$",
    params:
        spec=lambda wc: model_spec(DECODERS[wc.decoder], FMRI["fit"]),
    log:
        "logs/decode_fmri/{decoder}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/decode_fmri/{decoder}.tsv"
    threads: 1  # small fits: one core each, so that they run beside other jobs
    resources:
        device="auto",
    shell:
        "tbdencoder --threads {threads} decode-fmri --responses {input.responses} --features {input.features}"
        " --model-name {wildcards.decoder} --spec {params.spec} --device {resources.device} --out {output}"
        " > {log} 2>&1"


rule evaluate_decoding_fmri:
    """Retrieval of a subject's scored images from its decoded embeddings, every decoding model side by side."""
    input:
        expand("results/decoding/fmri/{{subject}}/{decoder}.h5", decoder=DECODERS),
    output:
        metrics="results/metrics/decoding_fmri_{subject}.json",
        figure=report(
            "results/figures/decoding_fmri_{subject}.png",
            caption="../report/decoding.rst",
            category="fMRI",
            subcategory="{subject}",
            labels={"subject": "{subject}", "figure": "decoding"},
        ),
    params:
        settings=lambda wc: settings("fmri.decoding"),
    log:
        "logs/evaluate_decoding/{subject}.log",
    conda:
        "../envs/tbdencoder.yaml"
    shell:
        "tbdencoder evaluate-decoding --decodings {input} --metrics-out {output.metrics}"
        " --figure-out {output.figure} --settings {params.settings} > {log} 2>&1"
