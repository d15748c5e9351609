"""Retrieval evaluation: the same queries against several index versions, compared.

A library with no dependency on the rest of reindexer (only its error tree):

- ``inputs``: BEIR / TREC queries and qrels, query logs, trec_eval's skipping rules;
- ``metrics``: nDCG, recall, precision, MRR, MAP and hit rate at any k, equal to trec_eval;
- ``significance``: paired bootstrap intervals and randomisation tests;
- ``overlap``: top-k overlap and rank-biased overlap, for comparisons without labels;
- ``runner``: ``evaluate`` and ``compare_unlabelled`` over searcher callables;
- ``gate``: the promotion rule, ``Gate.parse("ndcg@10 >= -0.005 and ...")``, and how it judges a candidate;
  its clauses are ``gate_clauses``, read from text by ``gate_parser``; ``gate_decision`` is what it decides,
  ``gate_traffic`` how it judges clauses over mirrored live traffic;
- ``report``: JSON (schema ``reindexer.evaluation/v1``), Markdown, one-file HTML.
"""

from reindexer.evaluation.gate import Gate
from reindexer.evaluation.gate_decision import GateDecision
from reindexer.evaluation.inputs import (
    DocIdCheck,
    LabelledQueries,
    SkippedCounts,
    align,
    check_doc_ids,
    load_qrels,
    load_queries,
    load_query_log,
)
from reindexer.evaluation.metrics import METRICS, QueryMetrics, evaluate_run, parse_metric, rank
from reindexer.evaluation.overlap import overlap_at_k, rbo_ext
from reindexer.evaluation.runner import (
    Comparison,
    EvaluationResult,
    Regression,
    Searcher,
    UnlabelledResult,
    WorstQuery,
    compare_unlabelled,
    evaluate,
)
from reindexer.evaluation.significance import PairedTest, paired_test, paired_tests

__all__ = [
    "METRICS",
    "Comparison",
    "DocIdCheck",
    "EvaluationResult",
    "Gate",
    "GateDecision",
    "LabelledQueries",
    "PairedTest",
    "QueryMetrics",
    "Regression",
    "WorstQuery",
    "Searcher",
    "SkippedCounts",
    "UnlabelledResult",
    "align",
    "check_doc_ids",
    "compare_unlabelled",
    "evaluate",
    "evaluate_run",
    "load_qrels",
    "load_queries",
    "load_query_log",
    "overlap_at_k",
    "paired_test",
    "paired_tests",
    "parse_metric",
    "rank",
    "rbo_ext",
]
