# The rule always exists so that phase commands (dvc.yaml) can name it; it only makes
# fmri.dataset_dir when simulate.fmri.enabled, and never touches a real dataset.
rule simulate_fmri:
    """Simulated Algonauts 2023 dataset with its ground truth."""
    output:
        directory(FMRI["dataset_dir"] if SIMULATE_FMRI["enabled"] else "data/simulated/.disabled"),
    params:
        sim=SIMULATE_FMRI,
        subjects=join(SUBJECTS),
        n_vertices=join(SIMULATE_FMRI.get("n_vertices", [])),
    log:
        "logs/simulate_fmri.log",
    conda:
        "../envs/tbdencoder.yaml"
    shell:
        "tbdencoder simulate fmri --out-dir {output} --subjects {params.subjects}"
        " --n-vertices {params.n_vertices} --n-train-images {params.sim[n_train_images]}"
        " --n-test-images {params.sim[n_test_images]} --n-shared-images {params.sim[n_shared_images]}"
        " --image-size-px {params.sim[image_size_px]} --n-repeats {params.sim[n_repeats]}"
        " --seed {params.sim[seed]} > {log} 2>&1"
