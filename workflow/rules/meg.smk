rule meg_fixations:
    """One subject's fixations from metadata.csv, with the next fixation of each and its scene image."""
    input:
        meg_dataset_dir(),
    output:
        "results/meg/{subject}/fixations.tsv",
    params:
        number=subject_number,
        settings=settings("meg.screen", "meg.bad_fixations"),
    log:
        "logs/meg_fixations/{subject}.log",
    conda:
        "../envs/tbdencoder.yaml"
    shell:
        "tbdencoder meg-fixations --dataset-dir {input} --subject {params.number} --out {output}"
        " --settings {params.settings} > {log} 2>&1"


rule preprocess_meg:
    """MNE: notch, band-pass, resample, 204 gradiometers, fixation-locked epochs, peak-to-peak rejection."""
    input:
        fixations="results/meg/{subject}/fixations.tsv",
        dataset=meg_dataset_dir(),
    output:
        "results/meg/{subject}/epochs.h5",
    params:
        settings=settings("meg.preprocessing", "meg.bad_fixations"),
    log:
        "logs/preprocess_meg/{subject}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/preprocess_meg/{subject}.tsv"
    threads: 2
    shell:
        "tbdencoder --threads {threads} preprocess-meg --fixations {input.fixations} --dataset-dir {input.dataset}"
        " --out {output} --settings {params.settings} > {log} 2>&1"


rule meg_crops:
    """Foveal and parafoveal crops of every fixation (stimuli file of the shared feature stage)."""
    input:
        fixations="results/meg/{subject}/fixations.tsv",
        dataset=meg_dataset_dir(),
    output:
        "results/meg/{subject}/stimuli.h5",
    params:
        settings=settings("meg.crops", "meg.screen"),
    log:
        "logs/meg_crops/{subject}.log",
    conda:
        "../envs/tbdencoder.yaml"
    shell:
        "tbdencoder meg-crops --fixations {input.fixations} --out {output} --settings {params.settings} > {log} 2>&1"


rule fit_meg:
    """Time-resolved ridge for one training subject: out-of-fold predictions, folds grouped by scene over the
    scenes of all training subjects (the folds of fit_meg_joint: models of one and of several subjects side by
    side on the same folds)."""
    input:
        epochs="results/meg/{subject}/epochs.h5",
        features=meg_model_features,
        from_fits=lambda wc: list(model_fits(wc).values()),
        cohort=expand("results/meg/{subject}/epochs.h5", subject=MEG_SUBJECTS),
    output:
        "results/fits/meg/{subject}/{model}.h5",
    wildcard_constraints:
        subject="|".join(MEG_SUBJECTS) or "^$",
        model="|".join(m for m in MEG_MODELS if m not in MEG_JOINT) or "^$",
    params:
        args=meg_fit_args,
    log:
        "logs/fit_meg/{subject}_{model}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/fit_meg/{subject}_{model}.tsv"
    threads: 2
    resources:
        device="auto",  # where a family computes (ridge solver, gradient training); set by profiles
    shell:
        "tbdencoder --threads {threads} fit-meg --epochs {input.epochs} --features {input.features}"
        " --cohort-epochs {input.cohort} {params.args} --device {resources.device} --out {output} > {log} 2>&1"


rule fit_meg_joint:
    """One model of several subjects (subject_adapters) fitted on every training subject at once, in folds over
    all their scenes; each subject's out-of-fold predictions in its own fits file."""
    input:
        epochs=expand("results/meg/{subject}/epochs.h5", subject=MEG_SUBJECTS),
        features=lambda wc: [meg_model_features(wc, subject) for subject in MEG_SUBJECTS],
    output:
        expand("results/fits/meg/{subject}/{{model}}.h5", subject=MEG_SUBJECTS),
    wildcard_constraints:
        model="|".join(MEG_JOINT) or "^$",
    params:
        spec=lambda wc: model_spec(MEG_MODELS[wc.model], MEG["fit"]),
    log:
        "logs/fit_meg/joint_{model}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/fit_meg/joint_{model}.tsv"
    priority: 10  # long jobs first, so that short ones fill the cores beside them instead of waiting at the end
    threads: 2
    resources:
        device="auto",  # where a family computes (ridge solver, gradient training); set by profiles
    shell:
        "tbdencoder --threads {threads} fit-meg-joint --epochs {input.epochs} --features {input.features}"
        " --model-name {wildcards.model} --spec {params.spec} --device {resources.device} --out {output}"
        " > {log} 2>&1"


rule decode_meg:
    """The decoding direction, one decoding model: every training subject's MEG windows -> the foveal crop's image
    embedding, out of fold on the folds of all their scenes (those of fit_meg); one file per subject."""
    input:
        epochs=expand("results/meg/{subject}/epochs.h5", subject=MEG_SUBJECTS),
        features=lambda wc: [f"results/features/{MEG_DECODERS[wc.decoder]['backbone']}/meg_{subject}.h5"
                             for subject in MEG_SUBJECTS],
    output:
        expand("results/decoding/meg/{subject}/{{decoder}}.h5", subject=MEG_SUBJECTS),
    wildcard_constraints:
        decoder="|".join(MEG_DECODERS) or "^$",
    params:
        spec=lambda wc: model_spec(MEG_DECODERS[wc.decoder], MEG["fit"]),
        settings=lambda wc: settings("meg.decoding"),
    log:
        "logs/decode_meg/{decoder}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/decode_meg/{decoder}.tsv"
    threads: 1  # small fits: one core each, so that they run beside other jobs
    resources:
        device="auto",
    shell:
        "tbdencoder --threads {threads} decode-meg --epochs {input.epochs} --features {input.features}"
        " --model-name {wildcards.decoder} --spec {params.spec} --device {resources.device} --out {output}"
        " --settings {params.settings} > {log} 2>&1"


rule decode_meg_heldout:
    """The decoding direction for a held-out subject, one decoding model: decoded by models trained on the training
    subjects, each fold of its scenes without any fixation on them (clip_alignment: the mean subject layer)."""
    input:
        epochs="results/meg/{subject}/epochs.h5",
        features=lambda wc: f"results/features/{MEG_DECODERS[wc.decoder]['backbone']}/meg_{wc.subject}.h5",
        train_epochs=expand("results/meg/{train}/epochs.h5", train=MEG_SUBJECTS),
        train_features=lambda wc: [f"results/features/{MEG_DECODERS[wc.decoder]['backbone']}/meg_{train}.h5"
                                   for train in MEG_SUBJECTS],
    output:
        "results/decoding/meg/{subject}/{decoder}.h5",
    wildcard_constraints:
        subject="|".join(MEG_HELDOUT) or "^$",
        decoder="|".join(MEG_DECODERS) or "^$",
    params:
        spec=lambda wc: model_spec(MEG_DECODERS[wc.decoder], MEG["fit"]),
        settings=lambda wc: settings("meg.decoding"),
    log:
        "logs/decode_meg/{subject}_{decoder}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/decode_meg/{subject}_{decoder}.tsv"
    threads: 1  # small fits: one core each, so that they run beside other jobs
    resources:
        device="auto",
    shell:
        "tbdencoder --threads {threads} decode-meg-heldout --epochs {input.epochs} --features {input.features}"
        " --train-epochs {input.train_epochs} --train-features {input.train_features}"
        " --model-name {wildcards.decoder} --spec {params.spec} --device {resources.device} --out {output}"
        " --settings {params.settings} > {log} 2>&1"


rule evaluate_decoding_meg:
    """Retrieval over time of a subject's decoded embeddings, every decoding model side by side."""
    input:
        expand("results/decoding/meg/{{subject}}/{decoder}.h5", decoder=MEG_DECODERS),
    output:
        metrics="results/metrics/decoding_meg_{subject}.json",
        figure=report(
            "results/figures/decoding_meg_{subject}.png",
            caption="../report/meg_decoding.rst",
            category="MEG",
            subcategory="{subject}",
            labels={"subject": "{subject}", "figure": "decoding"},
        ),
    params:
        settings=lambda wc: settings("meg.decoding"),
    log:
        "logs/evaluate_decoding/{subject}.log",
    conda:
        "../envs/tbdencoder.yaml"
    shell:
        "tbdencoder evaluate-decoding --decodings {input} --metrics-out {output.metrics}"
        " --figure-out {output.figure} --settings {params.settings} > {log} 2>&1"


rule kshot_meg:
    """A held-out subject from k of its fixations: a model of several subjects calibrated on them, side by side
    with ridge pooled over the training subjects and ridge on the same k fixations alone."""
    input:
        epochs="results/meg/{subject}/epochs.h5",
        features=meg_model_features,
        train_epochs=expand("results/meg/{train}/epochs.h5", train=MEG_SUBJECTS),
        train_features=lambda wc: [meg_model_features(wc, train) for train in MEG_SUBJECTS],
    output:
        metrics="results/metrics/kshot_meg_{subject}_{model}.json",
        figure=report(
            "results/figures/kshot_meg_{subject}_{model}.png",
            caption="../report/meg_kshot.rst",
            category="MEG",
            subcategory="{subject}",
            labels={"subject": "{subject}", "figure": "k-shot {model}"},
        ),
    wildcard_constraints:
        subject="|".join(MEG_HELDOUT) or "^$",
        model="|".join(MEG_CALIBRATED) or "^$",
    params:
        spec=lambda wc: model_spec(MEG_MODELS[wc.model], MEG["fit"]),
        settings=settings("meg.evaluation"),
    log:
        "logs/kshot_meg/{subject}_{model}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/kshot_meg/{subject}_{model}.tsv"
    priority: 10  # long jobs first, so that short ones fill the cores beside them instead of waiting at the end
    threads: 2
    resources:
        device="auto",
    shell:
        "tbdencoder --threads {threads} kshot-meg --epochs {input.epochs} --features {input.features}"
        " --train-epochs {input.train_epochs} --train-features {input.train_features}"
        " --model-name {wildcards.model} --spec {params.spec} --device {resources.device}"
        " --metrics-out {output.metrics} --figure-out {output.figure} --settings {params.settings} > {log} 2>&1"


rule fit_meg_heldout:
    """A held-out subject predicted by models trained on the training subjects (its scenes left out per fold)."""
    input:
        epochs="results/meg/{subject}/epochs.h5",
        features=meg_model_features,
        train_epochs=expand("results/meg/{train}/epochs.h5", train=MEG_SUBJECTS),
        train_features=lambda wc: [meg_model_features(wc, train) for train in MEG_SUBJECTS],
        from_fits=lambda wc: list(model_fits(wc).values()),
    output:
        "results/fits/meg/{subject}/{model}.h5",
    wildcard_constraints:
        subject="|".join(MEG_HELDOUT) or "^$",
    params:
        args=meg_fit_args,
    log:
        "logs/fit_meg/{subject}_{model}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/fit_meg/{subject}_{model}.tsv"
    threads: 2
    resources:
        device="auto",  # where a family computes (ridge solver, gradient training); set by profiles
    shell:
        "tbdencoder --threads {threads} fit-meg-heldout --epochs {input.epochs} --features {input.features}"
        " --train-epochs {input.train_epochs} --train-features {input.train_features}"
        " {params.args} --device {resources.device} --out {output} > {log} 2>&1"


rule evaluate_meg:
    """r per sensor x time, noise ceiling from repeated fixations, figures, per-subject metrics."""
    input:
        epochs="results/meg/{subject}/epochs.h5",
        fits=expand("results/fits/meg/{{subject}}/{model}.h5", model=MEG_MODELS),
    output:
        metrics="results/metrics/meg_{subject}.json",
        scores="results/scores/meg_{subject}.h5",
        figures=[
            report(
                f"results/figures/meg_{{subject}}_{figure}.png",
                caption=f"../report/meg_{figure}.rst",
                category="MEG",
                subcategory="{subject}",
                labels={"subject": "{subject}", "figure": figure.replace("_", " ")},
            )
            for figure in MEG_FIGURES
        ],
    params:
        settings=settings("meg.screen", "meg.noise_ceiling", "meg.evaluation"),
    log:
        "logs/evaluate_meg/{subject}.log",
    conda:
        "../envs/tbdencoder.yaml"
    shell:
        "tbdencoder evaluate-meg --epochs {input.epochs} --fits {input.fits} --metrics-out {output.metrics}"
        " --scores-out {output.scores} --figure-r-time {output.figures[0]} --figure-topomap {output.figures[1]}"
        " --figure-dual-vs-foveal {output.figures[2]} --figure-preferred-block {output.figures[3]}"
        " --figure-training {output.figures[4]} --settings {params.settings} > {log} 2>&1"
