# Settings and helpers of the slaf-convert rules.
import json

SLAF = config["slaf"]
# The binary: on PATH in the container; tests point it at a build.
SLAF_BIN = SLAF.get("binary", "slaf-convert")


def slaf_receipts(wc):
    """One receipt per shard, once the plan exists (re-evaluated after the checkpoint)."""
    with checkpoints.slaf_plan.get(**wc).output[0].open() as f:
        n = len(json.load(f)["shards"])
    return [f"results/slaf/{wc.dataset}.receipts/{i}-of-{n}.json" for i in range(1, n + 1)]
