# A simulate rule exists only while its simulation is enabled: a real dataset is an input that no
# rule makes (and none can overwrite).
if SIMULATE_FMRI:

    rule simulate_fmri:
        """Simulated Algonauts 2023 dataset with its ground truth."""
        output:
            directory(FMRI["dataset_dir"]),
        params:
            settings=settings("simulate.fmri", "fmri.subjects", "fmri.heldout_subjects"),
        log:
            "logs/simulate_fmri.log",
        conda:
            "../envs/tbdencoder.yaml"
        shell:
            "tbdencoder simulate fmri --out-dir {output} --settings {params.settings} > {log} 2>&1"


if SIMULATE_MEG:

    rule simulate_meg:
        """Simulated AVS-style free-viewing MEG dataset (FIF, metadata.csv, scenes) with its ground truth."""
        output:
            directory(MEG["dataset_dir"]),
        params:
            settings=settings("simulate.meg", "meg.subjects", "meg.heldout_subjects", "meg.screen", "meg.crops.dva"),
        log:
            "logs/simulate_meg.log",
        conda:
            "../envs/tbdencoder.yaml"
        shell:
            "tbdencoder simulate meg --out-dir {output} --settings {params.settings} > {log} 2>&1"
