"""What people read: a verb's result as lines and rich tables on a console the CLI chooses.

No policy here: each function prints what a result already says (the verbs decide);
`reindex ... --json` prints the same results as data instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from reindexer.evaluation import report

if TYPE_CHECKING:
    from rich.console import Console

    from reindexer.commands import ApplyResult, EvalOutcome
    from reindexer.evaluation.runner import EvaluationResult


def apply_result(out: Console, r: ApplyResult) -> None:
    """What an apply built, verified, measured and decided, in the order it happened."""
    if r.message:
        out.print(r.message)
    if r.stats:
        s = r.stats
        out.print(
            f"built {r.physical}: {s['embedded']} embedded, {s['copied']} copied, "
            f"{s['deleted']} deleted, {s['unchanged']} unchanged"
        )
    if r.verification:
        v = r.verification
        cos = v["sample_min_cosine"]
        out.print(
            f"verified: {v['store_count']} points = ledger {v['ledger_count']}"
            + (f", sample of {v['sample_size']} re-embedded (min cosine {cos:.4f})" if cos else "")
        )
    if r.evaluation_result is not None:
        _gate_evaluation(out, r.evaluation_result)
    elif r.evaluation:
        for version, means in r.evaluation["versions"].items():
            out.print(f"  {version}: " + "  ".join(f"{m} {x:.4f}" for m, x in means.items()))
    if r.traffic:
        _apply_traffic(out, r.traffic)
    if r.gate:
        refused = "inconclusive, refused" if r.gate.get("verdict") == "inconclusive" else "refused"
        verdict = "forced past a refusal" if r.gate["forced"] else ("passed" if r.gate["passed"] else refused)
        out.print(f"gate {verdict}: {r.gate['gate']}")
        for reason in r.gate["reasons"]:
            out.print(f"  {reason}")
    if r.cut_over:
        out.print(f"[bold green]cut over:[/] {r.collection} -> {r.live}")
    elif r.physical and not r.message:
        out.print(f"shadow {r.physical} is built; `reindex cutover {r.collection}` promotes it")


def _gate_evaluation(out: Console, evaluation: EvaluationResult) -> None:
    out.print(report.skipped_line(evaluation), highlight=False)
    out.print(report.headline_line(evaluation), highlight=False)
    out.print(report.rich_table(evaluation))
    for c in evaluation.comparisons.values():
        if c.worst_regressions:
            out.print(f"worst regressions of {c.candidate} by {evaluation.headline_metric}:", highlight=False)
        for reg in c.worst_regressions[:5]:
            out.print(
                f"  {reg.query_id}  {reg.baseline_value:.4f} -> {reg.candidate_value:.4f}  "
                f"{reg.query_text!r}  missed: {', '.join(reg.missed_relevant) or '-'}",
                highlight=False,
            )


def _apply_traffic(out: Console, t: dict[str, Any]) -> None:
    overlap = next(v for key, v in t.items() if key.startswith("overlap@"))
    out.print(
        f"  traffic: {t['queries']} mirrored queries, overlap@{t['k']} mean {overlap['mean']}, "
        f"rbo mean {t['rbo']['mean']}, p95 latency {t['latency_ratio']['p95']}x live"
    )


def evaluation(out: Console, outcome: EvalOutcome, *, per_query_hint: bool = True) -> None:
    """An evaluation in whichever mode it ran; ``per_query_hint`` says where per-query values are found."""
    if outcome.traffic is not None:
        traffic(out, outcome.traffic, outcome.gate, outcome.traffic_decision)
    elif outcome.unlabelled is not None:
        out.print(report.unlabelled_to_markdown(outcome.unlabelled))
    elif outcome.judged is not None:
        judged(out, outcome.judged, outcome.decisions, per_query_hint=per_query_hint)


def judged(out: Console, result: EvaluationResult, decisions: dict | None, *, per_query_hint: bool) -> None:
    out.print(report.skipped_line(result), highlight=False)
    out.print(report.headline_line(result), highlight=False)
    out.print(report.rich_table(result))
    if result.pairs:
        out.print(report.pipelines_line(result), highlight=False)
        for table in report.rich_pipelines(result):
            out.print(table)
    if not result.candidates:  # one version: its absolute numbers and its worst queries
        worst = result.worst_queries.get(result.baseline, [])
        if worst:
            out.print(f"worst queries of {result.baseline} by {result.headline_metric}:", highlight=False)
        for row in report.worst_rows(result, result.baseline)[1][:5]:
            out.print(f"  {row[0]}  {row[2]}  {row[1]!r}  relevant: {row[3]}", highlight=False)
        if per_query_hint:
            out.print("per-query values: --report-json FILE (or --json)", style="dim", highlight=False)
        return
    for candidate, decision in (decisions or {}).items():
        out.print(f"gate for {candidate}: {_verdict(decision)}")
        for reason in decision.reasons:
            out.print(f"  {reason}")


def _verdict(decision: Any) -> str:
    """passed, refused, or inconclusive (too few judged queries to decide, refused too)."""
    if decision.passed:
        return "[green]passed[/]"
    if getattr(decision, "verdict", "") == "inconclusive":
        return "[yellow]inconclusive[/] (refused: too few judged queries to decide)"
    return "[red]refused[/]"


def traffic(out: Console, summary: Any, gate: Any, decision: Any) -> None:
    """What mirrored traffic says about a shadow (reindexer.traffic's summary) and the gate's verdict."""
    if not summary.queries:
        out.print(
            f"no mirrored queries recorded for {summary.collection}; run the Searcher or `reindex serve` "
            "with a shadow sample (--shadow-sample 0.1) while a shadow version is built"
        )
    else:
        _traffic_tables(out, summary)
    if decision is not None:
        out.print(f"gate: {'[green]passed[/]' if decision.passed else '[red]refused[/]'} ({gate})")
        for reason in decision.reasons:
            out.print(f"  {reason}")


def _traffic_tables(out: Console, summary: Any) -> None:
    d = summary.to_dict()
    out.print(
        f"{summary.collection}: {summary.queries} live queries mirrored from {summary.live} "
        f"({summary.live_model}) to {summary.shadow} ({summary.shadow_model}), {d['first']} to {d['last']}"
    )
    table = Table(title=None, show_edge=False)
    for col in ("measure", "mean", "min", "p5", "p25", "p50", "p75", "p95"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for name, dist in ((f"overlap@{summary.k}", summary.overlap), ("rbo", summary.rbo)):
        row = dist.to_dict()
        table.add_row(name, *(f"{row[c]:.3f}" for c in ("mean", "min", "p5", "p25", "p50", "p75", "p95")))
    out.print(table)
    lat = Table(show_edge=False)
    for col in ("latency (ms)", "p50", "p95", "p99"):
        lat.add_column(col, justify="left" if col.startswith("latency") else "right")
    lat.add_row("live", *(f"{summary.live_ms.percentiles[p]:.1f}" for p in (50, 95, 99)))
    lat.add_row("shadow", *(f"{summary.shadow_ms.percentiles[p]:.1f}" for p in (50, 95, 99)))
    lat.add_row("shadow / live", *(f"{summary.latency_ratio(p):.2f}x" for p in (50, 95, 99)))
    out.print(lat)
    out.print("overlap histogram: " + "  ".join(f"{k}: {n}" for k, n in d["overlap_histogram"].items()))
    out.print("most changed:")
    for c in summary.most_changed[:5]:
        out.print(f"  overlap {c.overlap:.2f}  rbo {c.rbo:.2f}  {c.query}")
