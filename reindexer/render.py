"""What people read: every verb's result as lines and rich tables on a console the CLI chooses.

Every table and line `reindex` prints for a result is written here (cli.py only parses
options, calls a verb and hands the result to one of these). No policy here: each
function prints what a result already says (the verbs decide); `reindex ... --json`
prints the same results as data instead. Not here: the report files (reindexer.report_files,
reindexer.evaluation.report) and errors and progress on stderr (reindexer.cli_context).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from reindexer.evaluation import report

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from reindexer.commands import ApplyResult, EvalOutcome
    from reindexer.evaluation.runner import EvaluationResult
    from reindexer.planner import Plan


# -- apply -------------------------------------------------------------------------------
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
    if r.index_build:
        i = r.index_build
        out.print(f"  index: {ann_index_label(i)} built over {i['rows']:,} rows in {i['seconds']:.2f} s after the load")
    if r.verification:
        v = r.verification
        cos = v["sample_min_cosine"]
        out.print(
            f"verified: {v['store_count']} points = ledger {v['ledger_count']}"
            + (f", sample of {v['sample_size']} re-embedded (min cosine {cos:.4f})" if cos else "")
        )
        if v.get("coverage"):
            out.print(f"  {v['coverage']}", highlight=False)
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


# -- eval --------------------------------------------------------------------------------
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


# -- audit details and settings as text ---------------------------------------------
def key_values(detail: Any) -> str:
    """An audit detail as readable ``key=value`` text: nested objects as ``a.b=1``, lists joined by commas."""
    if not isinstance(detail, dict):
        return "" if detail is None else str(detail)
    parts: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            items = [json.dumps(x, default=str) if isinstance(x, (dict, list)) else str(x) for x in value]
            parts.append(f"{prefix}={','.join(items) or '[]'}")
        elif value is None or value == {}:
            return
        else:
            text = str(value)
            parts.append(f"{prefix}={json.dumps(text) if (' ' in text or not text) else text}")

    walk("", detail)
    return " ".join(parts)


# -- plan ------------------------------------------------------------------------------
def plan(out: Console, p: Plan, output: Path | None) -> None:
    """A plan as a reviewer reads it: from what, to what, how much work, and what it will be judged by."""
    out.print(f"[bold]plan {p.id[:12]}[/] for [bold]{p.collection}[/]: {p.mode} ({p.reason})")
    if p.from_version:
        out.print(
            f"  from  {p.from_version['physical']}  {p.from_version['model']}  dim {p.from_version['dim']}  "
            f"{p.from_version['count']} points"
        )
    out.print(
        f"  to    {p.to_version['physical']}  {p.to_version['model']}  dim {p.to_version['dim']}  "
        f"metric {p.to_version['metric']}"
        + (f"  vector {p.to_version['vector']}" if p.to_version.get("vector") else "")
    )
    c = p.counts
    out.print(
        f"  source {p.source.get('kind')}: {c['source_docs']} documents; embed {c['to_embed']}, "
        f"copy {c['to_copy']}, delete {c['to_delete']}"
    )
    if p.dimension_change:
        out.print("  dimension changes: a full rebuild into a new collection")
    lexical = (p.to_version.get("index_params") or {}).get("lexical")
    if lexical and lexical.get("engine") == "store":
        out.print(
            f"  lexical: BM25 computed by the store into sparse vector {lexical['vector']} (analyzer "
            f"{json.dumps(lexical.get('analyzer'), sort_keys=True)}, k1 {lexical['k1']}, b {lexical['b']})"
        )
    elif lexical:
        out.print(
            f"  lexical: BM25 in sparse vector {lexical['vector']} (k1 {lexical['k1']}, b {lexical['b']}, stemmer "
            f"{lexical['stemmer']}, average length {lexical.get('avgdl', '?')} terms)"
        )
    if p.estimate.get("seconds"):
        e = p.estimate
        between = f" (between {e['seconds_low']:.0f} and {e['seconds_high']:.0f})" if "seconds_high" in e else ""
        out.print(
            f"  estimate: about {e['seconds']:.0f} s{between} at {e['docs_per_second']:.0f} docs/s on "
            f"{e['device']}, about {e['storage_bytes'] / 1e6:.1f} MB"
        )
        if e.get("tokens"):
            t = e["tokens"]
            out.print(
                f"    tokens per document (a random sample of {t['sampled']}): p50 {t['p50']:.0f}, p90 {t['p90']:.0f}, "
                f"{t['truncated_share']:.0%} cut at the window of {t['window']}"
            )
        if e.get("basis"):
            out.print(f"    {e['basis']}")
    if p.estimate.get("index"):
        _index_estimate(out, p.estimate)
    agreement = p.estimate.get("agreement_with_torch")
    if agreement:
        out.print(
            f"  agreement with torch fp32 ({agreement['backend']}, {agreement['precision']}): cosine mean "
            f"{agreement['mean_cosine']:.5f}, min {agreement['min_cosine']:.5f} over {agreement['sample']} "
            "documents"
        )
    if p.gate:
        out.print(f"  gate: {p.gate}")
    if output:
        out.print(f"  written to {output}; run `reindex apply {output}`")


def _index_estimate(out: Console, e: dict) -> None:
    """The ANN index the store builds after the load (pgvector), on its own line: apart from encoding."""
    i = e["index"]
    head = f"  index: {ann_index_label(i)} over {i['rows']:,} rows after the load"
    if i.get("seconds") is None:
        out.print(f"{head}: {i['basis']}")
        return
    out.print(f"{head}: about {i['seconds']:.1f} s (between {i['seconds_low']:.1f} and {i['seconds_high']:.1f})")
    out.print(f"    {i['basis']}")
    if i.get("warning"):
        out.print(f"    [yellow]{i['warning']}[/]")
    if e.get("total_seconds"):
        out.print(f"  in all: about {e['total_seconds']:.0f} s, the index build included")


def ann_index_label(i: dict) -> str:
    """``ivfflat (lists 12, probes 4)``: an ANN index and the settings it was (or will be) built with."""
    keys = ("lists", "probes") if i.get("kind") == "ivfflat" else ("m", "ef_construction")
    settings = ", ".join(f"{k.replace('_', ' ')} {i[k]}" for k in keys if k in i)
    return f"{i.get('kind', '?')} ({settings})" if settings else str(i.get("kind", "?"))


# -- models ------------------------------------------------------------------------------
def model_registered(out: Console, m: Any) -> None:
    out.print(f"registered {m.label}  dim={m.dim}  similarity={m.similarity}  path={m.path}")


def model_list(out: Console, rows: list) -> None:
    """The registered model versions, with the settings and training facts that tell them apart."""
    t = Table("model", "dim", "similarity", "max seq", "settings", "training", "path")
    for m in rows:
        settings = {k: v for k, v in (m.settings or {}).items() if v not in (None, False)}
        t.add_row(
            m.label,
            str(m.dim),
            m.similarity,
            str(m.max_seq_length),
            escape(key_values(settings)),
            escape(_training_facts(m)) or "-",
            m.path,
        )
    out.print(t)


def _training_facts(m: Any) -> str:
    """The training facts a model version was registered with (base model, data, run id), as key=value."""
    facts = {}
    for key in ("base_model", "train_data", "run_id"):
        value = getattr(m, key, None)
        if value:
            facts[key] = value
    extra = getattr(m, "training", None)
    if isinstance(extra, dict):
        facts.update({k: v for k, v in extra.items() if v not in (None, "", {}) and k not in facts})
    return key_values(facts)


# -- what is live ------------------------------------------------------------------------
def status(out: Console, rows: list) -> None:
    """Each logical collection: live version, model, counts, shadows and retired versions; then repairs."""
    t = Table("collection", "live", "model", "dim", "points", "shadows", "retired")
    for r in rows:
        if not r["managed"]:
            t.add_row(r["collection"], str(r["live"]), "[dim]unmanaged: `reindex adopt`[/]", "", "", "", "")
            continue
        live = r["live"] or {}
        t.add_row(
            r["collection"],
            live.get("physical", "-"),
            live.get("model", "-"),
            str(live.get("dim", "")),
            str(live.get("count", "")),
            ", ".join(f"{s['physical']} ({s['status']}, {s['model']})" for s in r["shadows"]) or "-",
            ", ".join(s["physical"] for s in r["retired"]) or "-",
        )
    out.print(t)
    for r in rows:
        built = (r.get("live") or {}).get("ann_index") if r["managed"] else None
        if built:
            out.print(
                f"{r['collection']}: ANN index {ann_index_label(built)}, built over {built['rows']:,} rows "
                f"in {built['seconds']:.2f} s"
            )
    for r in rows:
        for repair in r.get("repairs", []):
            out.print(f"{r['collection']}: {'repaired' if repair['recorded'] else 'not repaired'}: {repair['message']}")


def history(out: Console, h: dict) -> None:
    """A collection's versions, then its audit log (details as key=value; --json has them whole)."""
    t = Table("version", "physical", "status", "model", "dim", "points", "live since")
    for v in h["versions"]:
        t.add_row(
            f"v{v['version']}",
            v["physical"],
            v["status"],
            v["model"],
            str(v["dim"]),
            str(v["count"] or ""),
            v["live_since"] or "",
        )
    out.print(t)
    e = Table("at", "action", "result", "who", "details")
    for ev in h["events"]:
        e.add_row(ev["at"], ev["action"], ev["result"], f"{ev['user']}@{ev['host']}", escape(key_values(ev["detail"])))
    out.print(e)
    if h["events"]:
        out.print("[dim]full details: reindex history --json[/]")


# -- keeping versions in step with the source --------------------------------------------
def sync_result(out: Console, r: Any) -> None:
    """What a sync did to each version it kept in step, and the watermark it left."""
    for version, s in r.versions.items():
        out.print(
            f"{r.collection} {version}: {s['embedded']} embedded, {s['deleted']} deleted, "
            f"{s['unchanged']} unchanged (source {r.source})"
        )
    if r.watermark is not None:
        out.print(f"watermark now {r.watermark}")


def verify_result(out: Console, r: Any) -> None:
    """Counts of store, ledger and source, the problems found, and whether a repair fixed them."""
    before = r.before
    out.print(
        f"{r.collection} v{r.version}: {before['store_count']} points, ledger {before['ledger_count']}"
        + (f", source {before['source_count']}" if before["source_count"] is not None else "")
    )
    if before.get("coverage"):
        out.print(f"  {before['coverage']}", highlight=False)
    for problem in before["problems"]:
        out.print(f"  [red]problem:[/] {problem}")
    if r.after is not None:
        out.print("repaired" if r.fixed else "[red]still broken after repair:[/]")
        for problem in r.after["problems"]:
            out.print(f"  {problem}")
    elif before["ok"]:
        out.print("[green]consistent[/]")


# -- moving the alias and dropping versions ----------------------------------------------
def cutover(out: Console, r: dict) -> None:
    out.print(
        f"{r['collection']} -> {r['live']}"
        + (" (completed the interrupted cut-over)" if r.get("completed") else "" if r["changed"] else " (unchanged)")
        + (f"\n  catch-up: {r['catch_up']}" if r.get("catch_up") else "")
    )


def rollback(out: Console, r: dict) -> None:
    out.print(
        f"rolled back {r['collection']}: {r.get('from')} -> {r['live']}"
        + (
            f" ({r['re_embedded']} re-embedded, {r['deleted']} deleted)"
            if r.get("changed")
            else " (completed the interrupted rollback)"
            if r.get("completed")
            else " (unchanged)"
        )
        + (f"\n  catch-up: {r['catch_up']}" if r.get("catch_up") else "")
    )


def gc(out: Console, r: dict) -> None:
    out.print(f"dropped: {', '.join(r['dropped']) or 'nothing'}; kept: {', '.join(r['kept']) or '-'}")


# -- collections made elsewhere ----------------------------------------------------------
def adopted(out: Console, r: dict) -> None:
    out.print(
        f"adopted {r['collection']} ({r['physical']}) as v{r['version']} of {r['model']}"
        + (f", vector {r['vector']!r}" if r["vector"] else "")
        + ": "
        f"{r['sample']} sampled vectors agree (min cosine {r['min_cosine']}), "
        + (
            f"{r['points_tagged']} points tagged"
            if r["tag"] == "point"
            else "model recorded in the collection's properties (no field for a per-point tag)"
        )
    )


def forgotten(out: Console, r: dict) -> None:
    out.print(
        f"forgot {r['collection']}: {', '.join(r['versions']) or 'no versions'}; still in the store: "
        f"{', '.join(r['left_in_store']) or 'nothing'}"
        if r["forgotten"]
        else f"{r['collection']}: nothing forgotten"
    )


def migrated(out: Console, r: dict) -> None:
    out.print(
        f"{r['collection']} is now an alias of {r['copied_to']} ("
        + ("completed the interrupted migrate; " if r.get("completed") else "")
        + f"{r['copied']} points copied; the name was missing for {r['name_missing_ms']} ms)"
        if r["migrated"]
        else f"copied to {r['copied_to']}; not migrated"
    )


# -- the state database and the gate's calibration ---------------------------------------
def state_upgraded(out: Console, d: Any) -> None:
    out.print(
        f"{d.url}: schema revision {d.from_revision or 'none (made before migrations)'} -> {d.to_revision}"
        + (f" (backup: {d.backup})" if d.backup else "")
        if d.upgraded
        else f"{d.url}: already at {d.to_revision}"
    )


def calibration(out: Console, found: Any) -> None:
    """The gate's A/A calibration, as reindexer.evaluation.calibrate writes it."""
    from reindexer.evaluation.calibrate import render as calibration_lines

    out.print("\n".join(calibration_lines(found)), highlight=False)
