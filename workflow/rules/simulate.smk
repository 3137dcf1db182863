# A simulate rule exists only while its simulation is enabled: a real dataset is an input that no
# rule makes (and none can overwrite).
if SIMULATE_FMRI["enabled"]:

    rule simulate_fmri:
        """Simulated Algonauts 2023 dataset with its ground truth."""
        output:
            directory(FMRI["dataset_dir"]),
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


if SIMULATE_MEG["enabled"]:

    rule simulate_meg:
        """Simulated AVS-style free-viewing MEG dataset (FIF, metadata.csv, scenes) with its ground truth."""
        output:
            directory(MEG["dataset_dir"]),
        params:
            sim=SIMULATE_MEG,
            subjects=join(MEG.get("subjects", []) + MEG.get("heldout_subjects", [])),
            scene_size=join(SIMULATE_MEG.get("scene_size_px", [])),
            screen=screen_args(),
            dva=MEG.get("crops", {}).get("dva"),
        log:
            "logs/simulate_meg.log",
        conda:
            "../envs/tbdencoder.yaml"
        shell:
            "tbdencoder simulate meg --out-dir {output} --subjects {params.subjects}"
            " --n-sessions {params.sim[n_sessions]} --n-trials-per-session {params.sim[n_trials_per_session]}"
            " --n-scenes {params.sim[n_scenes]} --scene-size-px {params.scene_size}"
            " --repeat-fraction {params.sim[repeat_fraction]} --sfreq-hz {params.sim[sfreq_hz]}"
            " --latency-s {params.sim[latency_s]} --parafoveal-gain {params.sim[parafoveal_gain]}"
            " --snr {params.sim[snr]} --line-freq-hz {params.sim[line_freq_hz]} {params.screen} --crop-dva {params.dva}"
            " --seed {params.sim[seed]} > {log} 2>&1"
