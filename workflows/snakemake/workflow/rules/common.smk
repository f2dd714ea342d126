# Settings and helpers of the slaf-convert rules.
import json
import os

import yaml
from snakemake.utils import validate

# A misspelt key or a missing manifest map fails here, naming the key, not mid-run.
validate(config, "../schemas/config.schema.yaml")

SLAF = config["slaf"]
# The binary: on PATH in the container; tests point it at a build.
SLAF_BIN = SLAF.get("binary", "slaf-convert")
# Where the datasets go: a local directory, or an s3://, gs:// or az:// prefix that shards
# write into and commit commits in (credentials from the jobs' environment).
SLAF_PREFIX = str(SLAF.get("dataset_prefix", "results/slaf")).rstrip("/")
SLAF_IN_STORE = "://" in SLAF_PREFIX
# What commit leaves locally for Snakemake: the dataset's completion marker, or (a dataset in
# a store) the line commit prints, written once the marker is in the store.
SLAF_DONE = (
    "results/slaf/{dataset}.committed.txt"
    if SLAF_IN_STORE
    else os.path.join(SLAF_PREFIX, "{dataset}.slaf", "_SLAF_COMPLETE.json")
)


def slaf_receipts(wc):
    """One receipt per shard, once the plan exists (re-evaluated after the checkpoint)."""
    with checkpoints.slaf_plan.get(**wc).output[0].open() as f:
        n = len(json.load(f)["shards"])
    return [
        f"results/slaf/{wc.dataset}.receipts/{i}-of-{n}.json" for i in range(1, n + 1)
    ]


def slaf_manifest_dir(wc):
    """The manifest's directory: input paths in the plan are relative to it (shard --inputs)."""
    return os.path.dirname(os.path.abspath(SLAF["datasets"][wc.dataset]))


def slaf_manifest_inputs(wc):
    """The manifest's local inputs: declared by plan and shards, so a changed input re-runs
    them and storage plugins stage them. Inputs given as s3://, gs:// or az:// URIs are
    fetched by slaf-convert itself (credentials from the job's environment)."""
    with open(SLAF["datasets"][wc.dataset]) as f:
        doc = yaml.safe_load(f)
    return [
        os.path.join(slaf_manifest_dir(wc), i["path"])
        for i in doc["inputs"]
        if "://" not in str(i["path"])
    ]
