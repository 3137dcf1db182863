rule features:
    """Multi-layer backbone features of one subject's stimuli: fMRI images or MEG fixation crops
    (content-addressed cache under results/features/cache)."""
    input:
        "results/{modality}/{subject}/stimuli.h5",
    output:
        "results/features/{backbone}/{modality}_{subject}.h5",
    params:
        spec=lambda wc: BACKBONES[wc.backbone],
        layers=lambda wc: join(BACKBONES[wc.backbone]["layers"]),
        weights=lambda wc: (
            "--random-init"
            if BACKBONES[wc.backbone]["random_init"]
            else f"--pretrained {BACKBONES[wc.backbone]['pretrained']}"
        ),
        extra=lambda wc: " ".join(
            ([f"--map-size {BACKBONES[wc.backbone]['map_size']}"] if BACKBONES[wc.backbone].get("map_size") else [])
            + (["--embedding"] if BACKBONES[wc.backbone].get("embedding") else [])
        ),
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
        "tbdencoder --threads {threads} features --stimuli {input} --out {output}"
        " --library {params.spec[library]} --model {params.spec[model]} {params.weights} --layers {params.layers}"
        " --grid-size {params.spec[grid_size]} {params.extra} --batch-size {params.spec[batch_size]}"
        " --seed {params.spec[seed]} --num-workers {threads} --device {resources.device} --cache-dir results/features/cache > {log} 2>&1"
