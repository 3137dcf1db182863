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
    """Time-resolved ridge for one training subject: out-of-fold predictions, folds grouped by scene."""
    input:
        epochs="results/meg/{subject}/epochs.h5",
        features=meg_model_features,
        from_fits=lambda wc: list(model_fits(wc).values()),
    output:
        "results/fits/meg/{subject}/{model}.h5",
    wildcard_constraints:
        subject="|".join(MEG_SUBJECTS) or "^$",
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
        " {params.args} --device {resources.device} --out {output} > {log} 2>&1"


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
