"""The options `reindex` commands take, as click decorators, and what the shared ones parse into.

The groups several commands share (how a model is run, where it embeds, where documents
come from) come with the function that turns their values into what a verb takes
(``model_settings``, ``use_runtime``, ``source_spec``). apply, eval and serve take so many
options that theirs are grouped here too, in the order their --help lists them, so that
cli.py reads as the list of commands. Not here: the commands themselves (reindexer.cli),
and any decision about the values beyond their parsing (the verbs in reindexer.commands).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reindexer import commands
from reindexer.cli_context import Ctx
from reindexer.devices import PRECISIONS, RUNTIME_PRECISIONS
from reindexer.errors import UsageError
from reindexer.model_identity import ModelSettings
from reindexer.runtimes import CHOICES, parse_runtime

CORRECTION_HELP = (
    "Multiplicity correction of the gate's significance tests, over all its metrics, pipelines and candidates: "
    "holm (family-wise error), bh (Benjamini-Hochberg, false discovery rate) or none."
)
UNDERPOWERED_HELP = (
    "Pass a 'not significantly worse' clause even when the judged queries are too few to see the drop the gate "
    "declares as mattering (MDE at 80% power > margin); without it such a clause is inconclusive and refuses."
)


def _stacked(*decorators: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
    """The decorators as one, applied as if stacked in this order above a function (the first on top)."""

    def apply(fn: Callable) -> Callable:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


def model_settings_options(fn: Callable) -> Callable:
    """How a model is run (its ModelSettings): dimensions, prompts, sequence length, runtime, precision."""
    return _stacked(
        click.option("--truncate-dim", type=click.IntRange(min=1), help="Matryoshka: keep the first N dimensions."),
        click.option("--normalize/--no-normalize", default=False, help="L2-normalise vectors."),
        click.option("--max-seq-length", type=click.IntRange(min=1), help="Truncate inputs to N tokens."),
        click.option("--query-prompt", help="Prefix for queries, e.g. 'query: '."),
        click.option("--document-prompt", help="Prefix for documents, e.g. 'passage: '."),
        click.option("--trust-remote-code", is_flag=True, help="Allow the model folder's own Python code."),
        click.option(
            "--backend",
            type=click.Choice(CHOICES),
            default=None,
            help="Inference backend (default torch); onnx and openvino need their extra. "
            "Not torch: another model version.",
        ),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default=None,
            help="fp16 on CUDA, fp32 elsewhere by default; bf16 is another model version.",
        ),
    )(fn)


def model_settings(kw: dict[str, Any], ctx: Ctx | None = None) -> ModelSettings:
    """The ModelSettings the model settings options give (popped from ``kw``); --precision also runs the model so."""
    runtime, quantization = parse_runtime(kw.pop("backend", None))  # --backend: the model runtime
    precision = kw.pop("precision", None)
    if ctx is not None and precision:
        ctx.ws.use_runtime(precision=precision)
    return ModelSettings(
        normalize=kw.pop("normalize"),
        truncate_dim=kw.pop("truncate_dim"),
        max_seq_length=kw.pop("max_seq_length"),
        query_prompt=kw.pop("query_prompt"),
        document_prompt=kw.pop("document_prompt"),
        trust_remote_code=kw.pop("trust_remote_code"),
        precision=precision,
        backend=runtime,
        quantization=quantization,
    )


#: the index options' parameters: each given one goes into the plan's ``index_params`` under its name
INDEX_OPTIONS = ("hnsw_m", "hnsw_ef_construct", "ann_index", "ivf_lists", "ivf_probes", "quantization")


def index_options(fn: Callable) -> Callable:
    """The new version's ANN index and its settings (``reindexer.adapters.base.INDEX_PARAM_KEYS``)."""
    return _stacked(
        click.option("--hnsw-m", type=click.IntRange(min=2), help="HNSW M of the new index."),
        click.option("--hnsw-ef-construct", type=click.IntRange(min=4), help="HNSW ef_construct of the new index."),
        click.option(
            "--ann-index",
            type=click.Choice(["hnsw", "ivfflat"]),
            help="The new version's ANN index: hnsw (every store), or ivfflat (pgvector), built after the load.",
        ),
        click.option(
            "--ivf-lists",
            type=click.IntRange(min=1),
            help="IVFFlat lists (default: rows / 1000, sqrt(rows) above a million rows).",
        ),
        click.option(
            "--ivf-probes", type=click.IntRange(min=1), help="IVFFlat lists a query scans (default: sqrt of the lists)."
        ),
        click.option(
            "--quantization", type=click.Choice(["none", "scalar"]), help="Vector quantisation of the new index."
        ),
    )(fn)


def index_settings(kw: dict[str, Any]) -> dict[str, Any] | None:
    """The index settings given (taken out of ``kw``), or None: the live version's are kept."""
    given = {key: kw.pop(key, None) for key in INDEX_OPTIONS}
    return {key: value for key, value in given.items() if value is not None} or None


def runtime_options(fn: Callable) -> Callable:
    """Where and in what batches to embed: not part of the model version."""
    return _stacked(
        click.option(
            "--devices", help="Devices to embed on, e.g. cuda:0,cuda:1 (default: every visible GPU, else the CPU)."
        ),
        click.option(
            "--embed-batch-size",
            type=click.IntRange(min=1),
            help="Texts per encode batch (default: 256 on CUDA, 64 on CPU).",
        ),
    )(fn)


def use_runtime(ctx: Ctx, kw: dict[str, Any]) -> None:
    """Embed on the --devices and with the --embed-batch-size given (popped from ``kw``), if any."""
    devices, batch = kw.pop("devices", None), kw.pop("embed_batch_size", None)
    if devices or batch:
        ctx.ws.use_runtime(devices=devices, batch_size=batch)


def source_options(fn: Callable) -> Callable:
    """Where the documents come from and which fields hold their text, id and update time."""
    return _stacked(
        click.option("--source", "source_text", help="payload (default), jsonl:PATH, parquet:PATH or sql:URL."),
        click.option("--query", help="SQL query for an sql: source."),
        click.option(
            "--text-field",
            multiple=True,
            help="Field (dotted path) holding the text (default: text); repeat it to embed several "
            "fields together, joined by a blank line.",
        ),
        click.option(
            "--text",
            "text_template",
            metavar="TEMPLATE",
            help="Text template over payload paths, e.g. '{title}. {text}' (missing fields render empty).",
        ),
        click.option("--id-field", help="Field holding the document id, for file and SQL sources (default: id)."),
        click.option("--updated-field", help="Field holding an updated-at value, for --since."),
    )(fn)


def source_spec(kw: dict[str, Any], ctx: Ctx, collection: str):
    """A SourceSpec from the shared source options, or None when none was given (the library defaults it)."""
    return commands.source_spec(
        ctx.ws,
        collection,
        kw.pop("source_text"),
        text_fields=kw.pop("text_field", ()),
        template=kw.pop("text_template", None),
        **{k: kw.pop(k) for k in ("query", "id_field", "updated_field")},
    )


def cutoffs(text: str | None) -> list[int] | None:
    """``--at 1,3,5,10,100`` as a sorted list of distinct cut-offs."""
    if not text:
        return None
    try:
        values = sorted({int(x) for x in text.replace(" ", "").split(",") if x})
    except ValueError:
        raise UsageError(f"--at {text!r}: cut-offs are whole numbers separated by commas, e.g. 1,3,5,10,100") from None
    if not values or values[0] < 1:
        raise UsageError(f"--at {text!r}: cut-offs must be at least 1")
    return values


def apply_options(fn: Callable) -> Callable:
    """The options of `reindex apply` after its plan file: resume, cut-over, the gate, reports, executor."""
    return _stacked(
        click.option(
            "--resume",
            "resume_collection",
            metavar="COLLECTION",
            help="Resume the interrupted apply of COLLECTION; when its last apply finished, say so and exit 0.",
        ),
        click.option(
            "--cutover/--no-cutover",
            default=True,
            help="Cut over when the shadow is verified (default) or leave it built.",
        ),
        click.option(
            "--no-delete", is_flag=True, help="Keep documents that vanished from the source during the build."
        ),
        click.option(
            "--gate",
            help="Promotion gate (overrides the plan's), e.g. 'ndcg@10 >= 0 and not significantly worse at p < 0.05'.",
        ),
        click.option(
            "--queries", type=click.Path(path_type=Path), help="Judged queries (BEIR queries.jsonl) for the gate."
        ),
        click.option(
            "--qrels", type=click.Path(path_type=Path), help="Relevance judgements (BEIR TSV or TREC) for the gate."
        ),
        click.option("-k", "k", default=10, show_default=True, help="Cut-off of the gate's evaluation."),
        click.option("--force", is_flag=True, help="Cut over even when the gate refuses (recorded in the audit log)."),
        click.option(
            "--full-verify",
            is_flag=True,
            help="Verify every point of the shadow (default: counts and a random sample, past 4,603 points).",
        ),
        click.option("--correction", default="holm", show_default=True, metavar="holm|bh|none", help=CORRECTION_HELP),
        click.option("--allow-underpowered", is_flag=True, help=UNDERPOWERED_HELP),
        click.option(
            "--report-json", type=click.Path(path_type=Path), help="Write the gate's evaluation as JSON (as eval does)."
        ),
        click.option("--report-md", type=click.Path(path_type=Path), help="Write the gate's evaluation as Markdown."),
        click.option(
            "--report-html", type=click.Path(path_type=Path), help="Write the gate's evaluation as one HTML file."
        ),
        runtime_options,
        click.option(
            "--precision",
            type=click.Choice(sorted(RUNTIME_PRECISIONS)),
            help="Run the model at this precision (default fp16 on CUDA, fp32 elsewhere).",
        ),
        click.option(
            "--executor",
            type=click.Choice(["local", "ray"]),
            default=None,
            help="Where the build reads and embeds: this process (local) or a Ray cluster (ray); "
            "default [apply] executor.",
        ),
        click.option(
            "--ray-address",
            metavar="ADDRESS",
            help="The Ray cluster for --executor ray (ray://HOST:10001); default RAY_ADDRESS, else a local Ray.",
        ),
    )(fn)


def eval_options(fn: Callable) -> Callable:
    """The options of `reindex eval`: what to judge by, which versions, cut-offs, the gate, reports."""
    return _stacked(
        click.option("--queries", type=click.Path(path_type=Path), help="BEIR queries.jsonl (_id, text)."),
        click.option(
            "--qrels", type=click.Path(path_type=Path), help="Qrels: BEIR TSV (query-id corpus-id score) or TREC."
        ),
        click.option(
            "--log", "log", type=click.Path(path_type=Path), help="Label-free: a query log (lines or JSONL) instead."
        ),
        click.option(
            "--from-traffic",
            is_flag=True,
            help="Label-free: live queries the Searcher or `reindex serve` mirrored to the shadow.",
        ),
        click.option(
            "--since", "since", help="With --from-traffic: records since an ISO time or a duration back (30m, 6h, 2d)."
        ),
        click.option(
            "--shadow", "shadow", help="With --from-traffic: the shadow version (default: the newest mirrored)."
        ),
        click.option(
            "--versions",
            help="live,shadow (default; the live version alone when there is no shadow), one version "
            "(v1: absolute metrics, the baseline) or several (v3,v4,v5); "
            "the first is the baseline.",
        ),
        click.option(
            "-k",
            "k",
            default=10,
            show_default=True,
            help="Headline cut-off: nDCG@K heads the report and ranks the worst queries.",
        ),
        click.option(
            "--at",
            "at",
            metavar="K1,K2,...",
            help="Cut-offs to report, e.g. 1,3,5,10,100 (default: 1, 3, 5 ... up to -k).",
        ),
        click.option(
            "--depth", type=click.IntRange(min=1), help="Results each query asks for (default: the largest cut-off)."
        ),
        click.option(
            "--per-query", is_flag=True, help="Put per-query values in the JSON (always for a single version)."
        ),
        click.option(
            "--pipelines",
            metavar="P1,P2,...",
            help="Judged: also run each version as the application may: lexical (BM25 over the texts), hybrid "
            "(dense and BM25 fused by RRF); dense always runs. Needs the hybrid extra.",
        ),
        click.option(
            "--rerank",
            type=click.Path(path_type=Path),
            help="A sentence-transformers CrossEncoder folder: the dense+rerank and hybrid+rerank pipelines' "
            "second stage.",
        ),
        click.option(
            "--rerank-top", type=click.IntRange(min=1), help="How many first-stage results it rescores (default 50)."
        ),
        click.option("--gate", help="Judge each candidate with this gate."),
        click.option(
            "--calibrate",
            is_flag=True,
            help="A/A calibration: run the gate (given or configured) on A/A comparisons of the live version "
            "(random halves of the judged queries; with --versions live,vN against vN, a rebuilt copy) and report "
            "each clause's false-positive rate with a Clopper-Pearson interval.",
        ),
        click.option("--resamples", type=int, help="With --calibrate: how many A/A comparisons (default 1000)."),
        click.option("--correction", default="holm", show_default=True, metavar="holm|bh|none", help=CORRECTION_HELP),
        click.option("--allow-underpowered", is_flag=True, help=UNDERPOWERED_HELP),
        click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap and randomisation tests."),
        click.option(
            "--report-json",
            type=click.Path(path_type=Path),
            help="Write the JSON report (schema reindexer.evaluation/v1).",
        ),
        click.option("--report-md", type=click.Path(path_type=Path), help="Write a Markdown report."),
        click.option("--report-html", type=click.Path(path_type=Path), help="Write a self-contained HTML report."),
    )(fn)


def serve_options(fn: Callable) -> Callable:
    """The options of `reindex serve`: where it listens, its limits, mirroring, reranking, logging."""
    return _stacked(
        click.option(
            "--host",
            default="127.0.0.1",
            show_default=True,
            help="Address to listen on; 0.0.0.0 only where something in front guards it (a pod, a proxy).",
        ),
        click.option(
            "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one)."
        ),
        click.option(
            "--shadow-sample",
            type=click.FloatRange(0, 1),
            default=0.0,
            show_default=True,
            help="Share of live queries mirrored to the shadow version, off the answering path.",
        ),
        click.option(
            "--refresh",
            type=click.FloatRange(min=0),
            default=1.0,
            show_default=True,
            help="Seconds between re-resolutions of each alias (0: every request).",
        ),
        click.option(
            "--max-k",
            type=click.IntRange(min=1),
            default=100,
            show_default=True,
            help="Largest k a request may ask for.",
        ),
        click.option(
            "--max-body-bytes",
            type=click.IntRange(min=1),
            default=65536,
            show_default=True,
            help="Largest request body; larger ones get 413.",
        ),
        click.option(
            "--preload",
            "preload",
            multiple=True,
            metavar="COLLECTION",
            help="Load COLLECTION's live model at start (repeatable); /readyz waits for it.",
        ),
        click.option(
            "--log-level",
            type=click.Choice(["critical", "error", "warning", "info", "debug"]),
            default="info",
            show_default=True,
        ),
        click.option(
            "--access-log/--no-access-log", default=True, show_default=True, help="Log each request to stderr."
        ),
        click.option(
            "--rerank",
            type=click.Path(path_type=Path),
            help="A CrossEncoder folder that rescores each answer's top --rerank-top "
            '(a request\'s "rerank": false skips it).',
        ),
        click.option("--rerank-top", type=click.IntRange(min=1), default=50, show_default=True),
    )(fn)
