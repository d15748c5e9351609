"""The evaluation verbs: evaluate (`reindex eval`), evaluate_versions, calibrate, traffic_report, compare_versions.

Each measures index versions as they stand, on judged queries, a query log (label-free) or
mirrored live traffic, with EvalRequest as what `reindex eval` is asked and EvalOutcome as
what it found. The A/B machinery they drive is reindexer.ab and reindexer.evaluation; the
gate an apply runs before its cut-over is apply's step (reindexer.commands.applying).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reindexer import policy
from reindexer.commands._shared import traffic_against
from reindexer.errors import UsageError
from reindexer.lookup import find_version
from reindexer.lookup import managed_collection as _collection
from reindexer.reconcile import reconcile_readonly
from reindexer.workspace import Workspace

if TYPE_CHECKING:
    from reindexer.evaluation.runner import EvaluationResult
    from reindexer.report_files import ReportFiles


def evaluate_versions(
    ws: Workspace,
    collection: str,
    queries: str,
    qrels: str,
    versions: str | None = None,
    k: int = 10,
    gate: str | None = None,
    seed: int = 0,
    at: list[int] | None = None,
    depth: int | None = None,
    pipelines: tuple[str, ...] = ("dense",),
    rerank: str | None = None,
    rerank_top: int | None = None,
    correction: str = "holm",
    allow_underpowered: bool = False,
):
    """Run judged queries against one version (absolute) or several (A/B/n); returns (result, gate,
    decisions by candidate). ``k`` is the headline cut-off, ``at`` the cut-offs reported, ``depth``
    how many results each query asks for (default: the largest cut-off), ``pipelines`` which
    retrieval pipelines run each version (reindexer.evaluation.pipelines), ``rerank`` the cross-encoder
    folder of the ``+rerank`` pipelines and ``rerank_top`` how many of the first stage's it rescores.
    The gate judges every candidate at once: their significance tests are one family, corrected for
    multiplicity by ``correction`` ("holm", "bh" or "none"); ``allow_underpowered`` passes a "not
    significantly worse" clause on an under-powered query set (inconclusive otherwise)."""
    from reindexer import ab
    from reindexer.evaluation import Gate
    from reindexer.rerank import DEFAULT_TOP, Reranker

    ws.require_store()
    lc = _collection(ws, collection)
    reconcile_readonly(ws, lc, "eval")
    chosen = ab.resolve_versions(ws, lc, versions)
    gate_obj = Gate.parse(gate, correction, allow_underpowered) if gate else None
    reranker = Reranker(rerank, top=rerank_top or DEFAULT_TOP, device=ws.config.device) if rerank else None
    result = ab.run_evaluation(
        ws,
        lc,
        chosen,
        ab.Judgements.load(queries, qrels),
        k=k,
        gate=gate_obj,
        seed=seed,
        at=at,
        depth=depth,
        pipelines=pipelines,
        reranker=reranker,
    )
    decisions = None
    if gate_obj is not None:
        traffic = {ab.label(v): traffic_against(ws, lc, v, chosen[0]) for v in chosen[1:] if gate_obj.needs_traffic}
        decisions = gate_obj.evaluate_all(result, traffic)
    return result, gate_obj, decisions


@dataclass(frozen=True)
class EvalRequest:
    """What `reindex eval` is asked, checked when made: judged queries (``queries`` and ``qrels``),
    a query ``log`` (label-free), or the mirrored traffic (``from_traffic``)."""

    queries: str | Path | None = None
    qrels: str | Path | None = None
    log: str | Path | None = None
    from_traffic: bool = False
    since: str | None = None
    shadow: str | None = None
    versions: str | None = None
    k: int = 10
    at: list[int] | None = None
    depth: int | None = None
    per_query: bool = False
    gate: str | None = None
    seed: int = 0
    pipelines: str | tuple[str, ...] | None = None
    """Judged only: ``dense,lexical,hybrid`` (default dense), checked and made canonical when made."""
    rerank: str | Path | None = None
    """The cross-encoder folder of the ``dense+rerank`` and ``hybrid+rerank`` pipelines."""
    rerank_top: int | None = None
    correction: str = "holm"
    """The gate's multiplicity correction: holm, bh or none (reindexer.evaluation.gate)."""
    allow_underpowered: bool = False
    """Pass a "not significantly worse" clause on an under-powered query set (inconclusive otherwise)."""

    def __post_init__(self) -> None:
        from reindexer.evaluation.gate import Gate, check_correction
        from reindexer.evaluation.pipelines import parse_pipelines

        object.__setattr__(self, "correction", check_correction(self.correction))
        if self.gate:
            Gate.parse(self.gate, self.correction)  # a gate that does not parse fails before any work
        if (self.pipelines is not None or self.rerank) and (self.log or self.from_traffic):
            raise UsageError("--pipelines and --rerank go with judged queries (--queries and --qrels)")
        object.__setattr__(self, "pipelines", parse_pipelines(self.pipelines))
        if (self.since or self.shadow) and not self.from_traffic:
            raise UsageError("--since and --shadow go with --from-traffic")
        if self.from_traffic:
            if self.queries or self.qrels or self.log or self.versions:
                raise UsageError(
                    "--from-traffic reads mirrored live queries; it takes no --queries, --qrels, --log or --versions"
                )
        elif self.log:
            if self.queries or self.qrels or self.gate:
                raise UsageError("--log compares without labels; it takes no --queries, --qrels or --gate")
        elif not (self.queries and self.qrels):
            raise UsageError("pass --queries and --qrels (judged), or --log (label-free)")


@dataclass
class EvalOutcome:
    """What an evaluation found, in the mode it ran; ``data`` is its JSON answer."""

    data: dict[str, Any]
    gate: Any = None
    judged: EvaluationResult | None = None
    decisions: dict[str, Any] | None = None  # the gate's decision by candidate (judged)
    unlabelled: Any = None
    traffic: Any = None
    traffic_decision: Any = None

    @property
    def refused(self) -> bool:
        """Whether the gate refused a candidate (the CLI exits with the gate's code)."""
        if self.traffic_decision is not None:
            return not self.traffic_decision.passed
        return bool(self.decisions) and not all(d.passed for d in (self.decisions or {}).values())

    def to_dict(self) -> dict[str, Any]:
        return self.data


def evaluate(ws: Workspace, collection: str, request: EvalRequest, reports: ReportFiles | None = None) -> EvalOutcome:
    """`reindex eval`: index versions measured as ``request`` says, each searched with its own model;
    the reports written as ``reports`` asks."""
    from reindexer.report_files import ReportFiles

    reports = reports or ReportFiles()
    if request.from_traffic:
        return _eval_traffic(ws, collection, request, reports)
    if request.log:
        return _eval_log(ws, collection, request, reports)
    return _eval_judged(ws, collection, request, reports)


def _eval_traffic(ws: Workspace, collection: str, request: EvalRequest, reports: ReportFiles) -> EvalOutcome:
    from reindexer.report_files import write_traffic_report

    summary, gate_obj, decision = traffic_report(ws, collection, request.since, request.shadow, request.gate)
    data = summary.to_dict()
    if decision is not None:
        data["gate"] = {"gate": str(gate_obj), **decision.as_dict()}
    write_traffic_report(data, reports)
    return EvalOutcome(data, gate_obj, traffic=summary, traffic_decision=decision)


def _eval_log(ws: Workspace, collection: str, request: EvalRequest, reports: ReportFiles) -> EvalOutcome:
    from reindexer.evaluation import report
    from reindexer.report_files import write_unlabelled_reports

    result = compare_versions(ws, collection, str(request.log), request.versions, request.k)
    write_unlabelled_reports(result, reports)
    return EvalOutcome(report.unlabelled_to_dict(result), unlabelled=result)


def _eval_judged(ws: Workspace, collection: str, request: EvalRequest, reports: ReportFiles) -> EvalOutcome:
    from reindexer.evaluation import report
    from reindexer.report_files import write_reports

    r = request
    result, gate_obj, decisions = evaluate_versions(
        ws,
        collection,
        str(r.queries),
        str(r.qrels),
        r.versions,
        r.k,
        r.gate,
        r.seed,
        at=r.at,
        depth=r.depth,
        pipelines=tuple(r.pipelines or ("dense",)),
        rerank=str(r.rerank) if r.rerank else None,
        rerank_top=r.rerank_top,
        correction=r.correction,
        allow_underpowered=r.allow_underpowered,
    )
    per_query = True if r.per_query else None  # None: per-query values for a single version only
    write_reports(result, gate_obj, reports, title=f"{collection}: retrieval evaluation", per_query=per_query)
    return EvalOutcome(report.to_dict(result, gate_obj, per_query=per_query), gate_obj, result, decisions)


def calibrate(ws: Workspace, collection: str, request: EvalRequest, resamples: int = 1000):
    """`reindex eval --calibrate`: the gate (``request.gate``, else the configured one, with its correction)
    run on ``resamples`` A/A comparisons of the live version on ``request``'s judged queries: against itself
    on random halves of the queries, or against an independently rebuilt copy named second in
    ``request.versions`` (``live,v4``). Returns a ``reindexer.evaluation.calibrate.Calibration``."""
    from reindexer import ab
    from reindexer.evaluation import Gate
    from reindexer.evaluation.calibrate import calibrate_evaluation, check_copy, check_resamples, judged_pipelines
    from reindexer.rerank import DEFAULT_TOP, Reranker

    check_resamples(resamples)
    gate_text = policy.plan_gate(ws.config, collection, request.gate)
    if request.log or request.from_traffic or not gate_text:
        raise UsageError(
            "--calibrate runs a gate on judged A/A comparisons: it needs --queries, --qrels and a gate",
            hint="pass --queries FILE --qrels FILE and --gate '...' (or set gate in reindex.toml)",
        )
    gate = Gate.parse(gate_text, request.correction, request.allow_underpowered)
    ws.require_store()
    lc = _collection(ws, collection)
    reconcile_readonly(ws, lc, "eval")
    chosen = ab.resolve_versions(ws, lc, request.versions or "live")
    check_copy(chosen)
    top = request.rerank_top or DEFAULT_TOP
    reranker = Reranker(request.rerank, top=top, device=ws.config.device) if request.rerank else None
    judgements = ab.Judgements.load(str(request.queries), str(request.qrels))
    result = ab.run_evaluation(
        ws, lc, chosen, judgements, k=request.k, seed=request.seed, at=gate.ks or None,
        pipelines=judged_pipelines(gate), reranker=reranker,
    )  # fmt: skip
    names = [ab.label(v) for v in chosen]
    found = calibrate_evaluation(gate, result, names[0], names[1] if len(names) > 1 else None,
                                 resamples=resamples, seed=request.seed)  # fmt: skip
    ws.state.audit("eval-calibrate", lc.name, gate=found.gate, resamples=resamples,
                   false_positive=found.false_positive.rate, nominal=found.nominal)  # fmt: skip
    return found


def traffic_report(
    ws: Workspace, collection: str, since: str | None = None, shadow: str | None = None, gate: str | None = None
):
    """What shadow traffic says about the newest mirrored shadow: (TrafficSummary, gate, decision or None)."""
    from reindexer.evaluation import Gate
    from reindexer.traffic import parse_since, summarize

    lc = _collection(ws, collection)
    gate_obj = Gate.parse(gate) if gate else None
    if gate_obj is not None and gate_obj.needs_judgements:
        raise UsageError(
            f"the gate {gate_obj} has judged clauses; --from-traffic takes only traffic clauses",
            hint="evaluate judged clauses with --queries and --qrels",
        )
    physical = find_version(ws, lc, shadow).physical_name if shadow else None
    summary = summarize(lc.name, ws.state.traffic(ws.store_url, lc.name, since=parse_since(since), shadow=physical))
    decision = gate_obj.evaluate(traffic=summary) if gate_obj is not None else None
    ws.state.audit(
        "eval-traffic",
        lc.name,
        queries=summary.queries,
        shadow=summary.shadow,
        gate=str(gate_obj) if gate_obj else None,
        passed=decision.passed if decision else None,
    )
    return summary, gate_obj, decision


def compare_versions(ws: Workspace, collection: str, log: str, versions: str | None = None, k: int = 10):
    """Label-free comparison from a query log: overlap@k and rank-biased overlap."""
    from reindexer import ab

    ws.require_store()
    lc = _collection(ws, collection)
    reconcile_readonly(ws, lc, "eval")
    return ab.run_unlabelled(ws, ab.resolve_versions(ws, lc, versions, minimum=2), log, k=k)
