rule features:
    """Multi-layer backbone features of one subject's stimuli: fMRI images or MEG fixation crops
    (content-addressed cache under results/features/cache)."""
    input:
        "results/{modality}/{subject}/stimuli.h5",
    output:
        "results/features/{backbone}/{modality}_{subject}.h5",
    params:
        settings=lambda wc: settings(f"features.backbones.{wc.backbone}"),
    log:
        "logs/features/{backbone}_{modality}_{subject}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/features/{backbone}_{modality}_{subject}.tsv"
    threads: 2
    resources:
        device="auto",  # where the network runs: auto (CUDA when the job sees a GPU), cpu or cuda; set by profiles
    shell:
        "tbdencoder --threads {threads} features --stimuli {input} --out {output} --settings {params.settings}"
        " --num-workers {threads} --device {resources.device} --cache-dir results/features/cache > {log} 2>&1"
