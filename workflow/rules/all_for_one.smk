# Seed 001's All-for-One recipes (fmri.all_for_one), per recipe and hemisphere: the neck (a factortopy model of
# fmri.models, fitted by fit_joint) -> whole-brain models -> groups (ROI labels, random partitions, clusters of
# the first whole-brain model's readouts) -> one small model per group (every training subject) -> the soup of
# each one's best epochs, stitched per scheme -> the teacher (the schemes averaged) -> the distilled student.
# Evaluated as models <recipe>_whole, <recipe>_teacher and <recipe>_student (src/tbdencoder/recipes.py).
AFO = "results/all_for_one/{recipe}/{hemi}"


def afo_path(wildcards, name):
    """A file of the recipe's folder for this hemisphere."""
    return f"results/all_for_one/{wildcards.recipe}/{wildcards.hemi}/{name}"


def recipe_features(wildcards):
    """Per subject one features file per backbone of the recipe's neck."""
    backbone = MODELS[RECIPES[wildcards.recipe]["neck"]]["backbone"]
    names = [backbone] if isinstance(backbone, str) else backbone
    return [f"results/features/{name}/fmri_{subject}.h5" for subject in SUBJECTS for name in names]


def recipe_neck_fits(wildcards):
    return expand("results/fits/{subject}/{hemi}/{neck}.h5", subject=SUBJECTS, hemi=wildcards.hemi,
                  neck=RECIPES[wildcards.recipe]["neck"])


def recipe_settings(wildcards, student=False):
    """The part of the recipe the job reads (recipes.job_settings), as its one --settings JSON argument: adding a
    partition seed changes no other scheme's jobs."""
    import json
    import shlex

    recipe = RECIPES[wildcards.recipe]
    scheme = f"whole-s{recipe['whole_brain_seeds'][0]}" if student else wildcards.get("scheme")
    part = recipe_job_settings(recipe, scheme)
    return shlex.quote(json.dumps({f"fmri.all_for_one.{wildcards.recipe}": part}, sort_keys=True))


def recipe_spec(wildcards, role):
    import json
    import shlex

    return shlex.quote(json.dumps(recipe_model_spec(config, wildcards.recipe, role, wildcards.get("scheme")),
                                  sort_keys=True))


AFO_INPUTS = dict(
    features=recipe_features,
    responses=expand("results/fmri/{subject}/responses.h5", subject=SUBJECTS),
    neck=recipe_neck_fits,
)
AFO_ARGS = ("--recipe-name {wildcards.recipe} --settings {params.settings} --hemisphere {wildcards.hemi}"
            " --responses {input.responses}")
AFO_MODEL_ARGS = " --features {input.features} --neck-fits {input.neck} --spec {params.spec}"


rule afo_groups:
    """A scheme's vertex groups per subject (ROI labels, a random partition, or clusters of readouts)."""
    input:
        responses=expand("results/fmri/{subject}/responses.h5", subject=SUBJECTS),
        whole_soup=lambda wc: [afo_path(wc, f"soups/whole-s{RECIPES[wc.recipe]['whole_brain_seeds'][0]}.h5")]
        if wc.scheme == "clusters" else [],
    output:
        AFO + "/groups/{scheme}.h5",
    wildcard_constraints:
        scheme=r"rois|clusters|random-s\d+",
    params:
        settings=lambda wc: recipe_settings(wc),
        whole_soup=lambda wc, input: f"--whole-soup {input.whole_soup}" if input.whole_soup else "",
    log:
        "logs/all_for_one/{recipe}_{hemi}_groups_{scheme}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/all_for_one/{recipe}_{hemi}_groups_{scheme}.tsv"
    shell:
        "tbdencoder all-for-one groups " + AFO_ARGS + " --scheme {wildcards.scheme} {params.whole_soup}"
        " --out {output} > {log} 2>&1"


rule afo_member:
    """One small model of a recipe (every training subject, one group of their vertices); its best epochs kept."""
    input:
        **AFO_INPUTS,
        groups=lambda wc: [] if wc.scheme.startswith("whole-s") else [afo_path(wc, f"groups/{wc.scheme}.h5")],
    output:
        AFO + "/members/{scheme}/{group}.h5",
    params:
        settings=lambda wc: recipe_settings(wc),
        spec=lambda wc: recipe_spec(wc, "member"),
        groups=lambda wc, input: f"--groups {input.groups}" if input.groups else "",
    log:
        "logs/all_for_one/{recipe}_{hemi}_{scheme}_{group}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/all_for_one/{recipe}_{hemi}_{scheme}_{group}.tsv"
    threads: 1
    resources:
        device="auto",
    shell:
        "tbdencoder --threads {threads} all-for-one member " + AFO_ARGS + AFO_MODEL_ARGS +
        " --scheme {wildcards.scheme} --group {wildcards.group} {params.groups} --device {resources.device}"
        " --out {output} > {log} 2>&1"


rule afo_soup:
    """Each small model of a scheme souped (its best epochs averaged), predictions stitched over its groups."""
    input:
        **AFO_INPUTS,
        members=lambda wc: [afo_path(wc, f"members/{wc.scheme}/{group}.h5")
                            for group in recipe_schemes(RECIPES[wc.recipe])[wc.scheme]],
    output:
        AFO + "/soups/{scheme}.h5",
    params:
        settings=lambda wc: recipe_settings(wc),
        spec=lambda wc: recipe_spec(wc, "member"),
    log:
        "logs/all_for_one/{recipe}_{hemi}_soup_{scheme}.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/all_for_one/{recipe}_{hemi}_soup_{scheme}.tsv"
    threads: 1
    resources:
        device="auto",
    shell:
        "tbdencoder --threads {threads} all-for-one soup " + AFO_ARGS + AFO_MODEL_ARGS +
        " --scheme {wildcards.scheme} --members {input.members} --device {resources.device} --out {output} > {log} 2>&1"


rule afo_teacher:
    """The schemes' stitched predictions averaged into the teacher; fits files of it and of the whole-brain model."""
    input:
        **AFO_INPUTS,
        soups=lambda wc: [afo_path(wc, f"soups/{scheme}.h5") for scheme in recipe_schemes(RECIPES[wc.recipe])],
    output:
        teacher=AFO + "/teacher.h5",
        teacher_fits=expand("results/fits/{subject}/{{hemi}}/{{recipe}}_teacher.h5", subject=SUBJECTS),
        whole_fits=expand("results/fits/{subject}/{{hemi}}/{{recipe}}_whole.h5", subject=SUBJECTS),
    params:
        settings=lambda wc: recipe_settings(wc),
        spec=lambda wc: recipe_spec(wc, "whole"),
    log:
        "logs/all_for_one/{recipe}_{hemi}_teacher.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/all_for_one/{recipe}_{hemi}_teacher.tsv"
    shell:
        "tbdencoder all-for-one teacher " + AFO_ARGS + AFO_MODEL_ARGS +
        " --soups {input.soups} --out {output.teacher} --teacher-fits {output.teacher_fits}"
        " --whole-fits {output.whole_fits} > {log} 2>&1"


rule afo_student:
    """One all-vertex model of every subject distilled from the teacher (the recipe's end)."""
    input:
        **AFO_INPUTS,
        teacher=AFO + "/teacher.h5",
    output:
        expand("results/fits/{subject}/{{hemi}}/{{recipe}}_student.h5", subject=SUBJECTS),
    params:
        settings=lambda wc: recipe_settings(wc, student=True),
        spec=lambda wc: recipe_spec(wc, "student"),
    log:
        "logs/all_for_one/{recipe}_{hemi}_student.log",
    conda:
        "../envs/tbdencoder.yaml"
    benchmark:
        "logs/benchmarks/all_for_one/{recipe}_{hemi}_student.tsv"
    priority: 10
    threads: 2
    resources:
        device="auto",
    shell:
        "tbdencoder --threads {threads} all-for-one student " + AFO_ARGS + AFO_MODEL_ARGS +
        " --teacher {input.teacher} --device {resources.device} --out {output} > {log} 2>&1"
