# slaf-convert as Snakemake rules: plan (checkpoint) -> one job per shard -> commit.
#
# Plan is a checkpoint, not `scattergather`: the shard count comes out of the plan at run
# time, and `scattergather` fixes N when the Snakefile is parsed.
# No rule declares the dataset directory (Snakemake deletes a job's outputs before it runs):
# each shard's only output is its receipt, written atomically as the shard's last act, and
# commit's only output is the completion marker. A forced re-run of commit (marker deleted)
# re-checks the tables and rewrites only the marker; after a re-plan it rebuilds the dataset.
# Plan and shards declare the manifest's inputs; shards read them through --inputs (the
# manifest's directory), and commit reads none. With `dataset_prefix` an object store URI,
# shards write into the store and commit commits there; commit's output is then the line it
# prints (results/slaf/NAME.committed.txt), and nothing of the dataset is local.


include: "common.smk"


checkpoint slaf_plan:
    input:
        manifest=lambda wc: SLAF["datasets"][wc.dataset],
        inputs=slaf_manifest_inputs,
    output:
        "results/slaf/{dataset}.plan.json",
    log:
        "logs/slaf/{dataset}.plan.log",
    container:
        SLAF["container"]
    threads: 1
    params:
        bin=SLAF_BIN,
        dataset=os.path.join(SLAF_PREFIX, "{dataset}.slaf"),
        sharding=SLAF.get("plan_args", ""),
    shell:
        "{params.bin} plan {input.manifest} -o {output} --dataset {params.dataset}"
        " --threads {threads} {params.sharding} 2> {log}"


rule slaf_shard:
    input:
        plan="results/slaf/{dataset}.plan.json",
        inputs=slaf_manifest_inputs,
    output:
        "results/slaf/{dataset}.receipts/{shard}.json",
    log:
        "logs/slaf/{dataset}.shard.{shard}.log",
    benchmark:
        "benchmarks/slaf/{dataset}.shard.{shard}.tsv"
    wildcard_constraints:
        shard=r"\d+-of-\d+",
    container:
        SLAF["container"]
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 1024 * attempt,
        runtime=60,
    params:
        bin=SLAF_BIN,
        inputs_dir=slaf_manifest_dir,
        extra=SLAF.get("extra", ""),
    shell:
        "{params.bin} shard {input.plan} --shard {wildcards.shard} --shared-target"
        " --inputs {params.inputs_dir} --receipt {output} --threads {threads}"
        " {params.extra} 2> {log}"


rule slaf_commit:
    input:
        plan="results/slaf/{dataset}.plan.json",
        receipts=slaf_receipts,
    output:
        SLAF_DONE,
    log:
        "logs/slaf/{dataset}.commit.log",
    benchmark:
        "benchmarks/slaf/{dataset}.commit.tsv"
    container:
        SLAF["container"]
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2048 * attempt,
        runtime=60,
    params:
        bin=SLAF_BIN,
    shell:
        # Local: commit writes the output (the marker); in a store, its line is the output.
        "{params.bin} commit {input.plan} {input.receipts} --threads {threads}"
        + (" > {output}" if SLAF_IN_STORE else "")
        + " 2> {log}"
