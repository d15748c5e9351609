"""`reindex`: a thin click layer over reindexer.commands.

Parses options, calls one library function, prints the result: a table for
people on stdout, or JSON with --json. Progress and logs go to stderr. Every
ReindexError becomes one line on stderr and its documented exit code.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table

from reindexer import commands, policy, render
from reindexer.devices import PRECISIONS, RUNTIME_PRECISIONS
from reindexer.embedding import ModelSettings
from reindexer.errors import EXIT_UNEXPECTED, EXIT_USAGE, ReindexError, UsageError
from reindexer.inference_backends import CHOICES, parse_backend
from reindexer.rerank import check_cross_encoder
from reindexer.workspace import Workspace

#: Width of tables written where no terminal reads them (a log, a pipe, CI): wide enough that no
#: cell is cut to fit 80 columns; tables are only as wide as their content.
LOG_WIDTH = 4096


class OutputConsole(Console):
    """stdout: a terminal's width on a terminal; elsewhere ``LOG_WIDTH``, so nothing is truncated.

    COLUMNS, when set, still wins, as it does for rich.
    """

    @property
    def size(self) -> ConsoleDimensions:
        dims = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and not self.is_terminal and not os.environ.get("COLUMNS"):
            return ConsoleDimensions(LOG_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


out = OutputConsole(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class Ctx:
    def __init__(self, store: str | None, state: str | None, as_json: bool, yes: bool):
        self.store_opt, self.state_opt = store, state
        self.as_json, self.yes = as_json, yes
        # Set by the commands that only look, before they open the workspace: they never create a state.
        self.read_only = False
        self._ws: Workspace | None = None

    @property
    def ws(self) -> Workspace:
        if self._ws is None:
            self._ws = Workspace.open(store=self.store_opt, state=self.state_opt, read_only=self.read_only)
        return self._ws

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()

    def confirm(self, question: str) -> bool:
        if self.yes:
            return True
        if sys.stdin.isatty():
            return click.confirm(question, default=False, err=True)
        raise UsageError("no terminal to confirm on", hint="pass --yes")

    def require_confirmable(self, what: str) -> None:
        """Fail before any work when a destructive step could not be confirmed at the end."""
        if not self.yes and not sys.stdin.isatty():
            raise UsageError(f"{what} needs confirmation and there is no terminal to ask", hint="pass --yes")

    def emit(self, data: Any, human: Callable[[Any], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(_plain(data), indent=2, default=str))
        else:
            human(data)


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


def _plain(data: Any) -> Any:
    if hasattr(data, "to_dict"):
        return data.to_dict()
    if is_dataclass(data) and not isinstance(data, type):
        return asdict(data)
    if isinstance(data, list):
        return [_plain(x) for x in data]
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json")
    return data


def run_command(fn: Callable) -> Callable:
    """Map the error tree to exit codes and close the workspace, for every command."""

    @functools.wraps(fn)
    @click.pass_obj
    def wrapper(ctx: Ctx, *args: Any, **kwargs: Any) -> None:
        try:
            fn(ctx, *args, **kwargs)
        except ReindexError as exc:
            # escaped: messages quote user input and hints such as pip install "reindexer[serve]"
            err.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False)
            if exc.hint:
                err.print(f"[bold]hint:[/] {escape(exc.hint)}", markup=True, highlight=False)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted; re-run the same command to resume")
            sys.exit(130)
        except click.exceptions.Exit:
            raise
        except Exception as exc:  # the last line of defence: one clear line, no traceback by default
            if os.environ.get("REINDEX_DEBUG"):
                raise
            err.print(f"[bold red]unexpected error:[/] {type(exc).__name__}: {exc}", markup=True, highlight=False)
            err.print("set REINDEX_DEBUG=1 for a traceback")
            sys.exit(EXIT_UNEXPECTED)
        finally:
            ctx.close()

    return wrapper


def _late_global(name: str) -> Callable:
    """The callback of a global option given after the verb: it sets what the group option would."""

    def callback(click_ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        obj = click_ctx.find_object(Ctx)
        if obj is None or value in (None, False, 0):
            return
        if name == "verbose":
            logging.getLogger().setLevel(logging.WARNING - 10 * min(value, 2))
        elif name == "json":
            obj.as_json = True
        elif name == "yes":
            obj.yes = True
        else:
            setattr(obj, f"{name}_opt", value)

    return callback


def _late_globals() -> list[click.Option]:
    return [
        click.Option(["--store"], hidden=True, expose_value=False, callback=_late_global("store")),
        click.Option(["--state"], hidden=True, expose_value=False, callback=_late_global("state")),
        click.Option(["--json"], is_flag=True, hidden=True, expose_value=False, callback=_late_global("json")),
        click.Option(["-y", "--yes"], is_flag=True, hidden=True, expose_value=False, callback=_late_global("yes")),
        click.Option(
            ["-v", "--verbose"], count=True, hidden=True, expose_value=False, callback=_late_global("verbose")
        ),
    ]


class ReindexGroup(click.Group):
    """A group whose commands also accept the global options after the verb (`reindex status --json`)."""

    group_class = type  # subgroups (`model`, `config`) are ReindexGroups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not isinstance(cmd, click.Group):
            taken = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
            cmd.params.extend(o for o in _late_globals() if not taken.intersection(o.opts))
        super().add_command(cmd, name)


@click.group(cls=ReindexGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", envvar="REINDEX_STORE", help="Vector store URL (default qdrant+local:.reindex/qdrant).")
@click.option(
    "--state", envvar="REINDEX_STATE", help="State store SQLAlchemy URL (default sqlite:///.reindex/state.db)."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.option("-y", "--yes", is_flag=True, help="Confirm destructive steps (cut-over, rollback, gc) without asking.")
@click.option("-v", "--verbose", count=True, help="Log more to stderr.")
@click.version_option(package_name="reindexer")
@click.pass_context
def cli(click_ctx: click.Context, store: str | None, state: str | None, as_json: bool, yes: bool, verbose: int) -> None:
    """Ship a new embedding model to live Qdrant and Milvus collections with no downtime.

    The options above are accepted after the verb too: `reindex status --json`.
    """
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    click_ctx.obj = Ctx(store, state, as_json, yes)


def model_settings_options(fn: Callable) -> Callable:
    for option in reversed(
        [
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
        ]
    ):
        fn = option(fn)
    return fn


def _settings(kw: dict[str, Any], ctx: Ctx | None = None) -> ModelSettings:
    backend, quantization = parse_backend(kw.pop("backend", None))
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
        backend=backend,
        quantization=quantization,
    )


def runtime_options(fn: Callable) -> Callable:
    for option in reversed(
        [
            click.option(
                "--devices", help="Devices to embed on, e.g. cuda:0,cuda:1 (default: every visible GPU, else the CPU)."
            ),
            click.option(
                "--embed-batch-size",
                type=click.IntRange(min=1),
                help="Texts per encode batch (default: 256 on CUDA, 64 on CPU).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _use_runtime(ctx: Ctx, kw: dict[str, Any]) -> None:
    devices, batch = kw.pop("devices", None), kw.pop("embed_batch_size", None)
    if devices or batch:
        ctx.ws.use_runtime(devices=devices, batch_size=batch)


def source_options(fn: Callable) -> Callable:
    for option in reversed(
        [
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
        ]
    ):
        fn = option(fn)
    return fn


def _source(kw: dict[str, Any], ctx: Ctx, collection: str):
    """A SourceSpec from the shared source options, or None when none was given (the library defaults it)."""
    return commands.source_spec(
        ctx.ws,
        collection,
        kw.pop("source_text"),
        text_fields=kw.pop("text_field", ()),
        template=kw.pop("text_template", None),
        **{k: kw.pop(k) for k in ("query", "id_field", "updated_field")},
    )


# -- model ----------------------------------------------------------------------
@cli.group()
def model() -> None:
    """Register and list model versions."""


@model.command("register")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="A readable name (default: the folder's name).")
@model_settings_options
@click.option("--base-model", help="Training fact: the model this one was fine-tuned from.")
@click.option("--train-data", help="Training fact: the data it was trained on.")
@click.option("--run-id", help="Training fact: the training run's id.")
@run_command
def model_register(ctx: Ctx, path: Path, name: str | None, base_model, train_data, run_id, **kw: Any) -> None:
    """Fingerprint and register the sentence-transformers model at PATH."""
    mv = commands.model_register(
        ctx.ws,
        str(path),
        name=name,
        settings=_settings(kw, ctx),
        base_model=base_model,
        train_data=train_data,
        run_id=run_id,
    )
    ctx.emit(mv, lambda m: out.print(f"registered {m.label}  dim={m.dim}  similarity={m.similarity}  path={m.path}"))


@model.command("list")
@run_command
def model_list(ctx: Ctx) -> None:
    """List registered model versions."""
    ctx.read_only = True
    models = commands.model_list(ctx.ws)

    def show(rows: list) -> None:
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

    ctx.emit(models, show)


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


# -- plan / apply ---------------------------------------------------------------
@cli.command("plan")
@click.argument("collection")
@click.option("--model", "model_path", type=click.Path(path_type=Path), help="Model folder (registered automatically).")
@click.option("--model-ref", help="A registered model: name, name@fingerprint or fingerprint prefix.")
@click.option("--name", "model_name", help="Name to register the model under.")
@model_settings_options
@source_options
@click.option("--metric", type=click.Choice(["cosine", "dot", "euclid"]), help="Distance of the new index.")
@click.option("--hnsw-m", type=click.IntRange(min=2), help="HNSW M of the new index.")
@click.option("--hnsw-ef-construct", type=click.IntRange(min=4), help="HNSW ef_construct of the new index.")
@click.option("--quantization", type=click.Choice(["none", "scalar"]), help="Vector quantisation of the new index.")
@click.option(
    "--lexical",
    type=click.Choice(["bm25", "none"]),
    help="Keep a BM25 sparse vector in the new version for lexical and hybrid search (Qdrant; Milvus's own "
    "BM25 function on Lite and servers from 2.5); none drops it. Default: as the live version.",
)
@click.option("--gate", help="Promotion gate, e.g. 'ndcg@10 >= -0.005 and not significantly worse at p < 0.05'.")
@click.option(
    "--vector-name", help="The dense vector to re-embed (checked against the one the collection was adopted with)."
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the plan JSON here.")
@runtime_options
@run_command
def plan_cmd(
    ctx: Ctx,
    collection: str,
    model_path,
    model_ref,
    model_name,
    metric,
    hnsw_m,
    hnsw_ef_construct,
    quantization,
    lexical,
    gate,
    vector_name,
    output,
    **kw: Any,
) -> None:
    """Compute what putting a model behind COLLECTION takes, as a reviewable plan."""
    _use_runtime(ctx, kw)
    settings = _settings(kw, ctx)
    source = _source(kw, ctx, collection)
    if model_path and model_ref:
        raise UsageError("pass either --model or --model-ref, not both")
    index_params = None
    if hnsw_m or hnsw_ef_construct or quantization:
        index_params = {
            k: v
            for k, v in (("hnsw_m", hnsw_m), ("hnsw_ef_construct", hnsw_ef_construct), ("quantization", quantization))
            if v is not None
        }
    p = commands.plan(
        ctx.ws,
        collection,
        model_path=str(model_path) if model_path else None,
        model_ref=model_ref,
        settings=settings,
        model_name=model_name,
        source=source,
        metric=metric,
        index_params=index_params,
        gate=gate,
        vector_name=vector_name,
        lexical=lexical,
    )
    if output:
        output.write_text(p.to_json() + "\n")
    ctx.emit(json.loads(p.to_json()), lambda _: _print_plan(p, output))


def _print_plan(p, output: Path | None) -> None:
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
        out.print(
            f"  estimate: {p.estimate['seconds']:.0f} s at {p.estimate['docs_per_second']:.0f} docs/s on "
            f"{p.estimate['device']}, about {p.estimate['storage_bytes'] / 1e6:.1f} MB"
        )
        if p.estimate.get("basis"):
            out.print(f"    {p.estimate['basis']}")
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


CORRECTION_HELP = (
    "Multiplicity correction of the gate's significance tests, over all its metrics, pipelines and candidates: "
    "holm (family-wise error), bh (Benjamini-Hochberg, false discovery rate) or none."
)
UNDERPOWERED_HELP = (
    "Pass a 'not significantly worse' clause even when the judged queries are too few to see the drop the gate "
    "declares as mattering (MDE at 80% power > margin); without it such a clause is inconclusive and refuses."
)


@cli.command("apply")
@click.argument("plan_file", required=False, type=click.Path(path_type=Path))
@click.option(
    "--resume",
    "resume_collection",
    metavar="COLLECTION",
    help="Resume the interrupted apply of COLLECTION; when its last apply finished, say so and exit 0.",
)
@click.option(
    "--cutover/--no-cutover", default=True, help="Cut over when the shadow is verified (default) or leave it built."
)
@click.option("--no-delete", is_flag=True, help="Keep documents that vanished from the source during the build.")
@click.option(
    "--gate", help="Promotion gate (overrides the plan's), e.g. 'ndcg@10 >= 0 and not significantly worse at p < 0.05'."
)
@click.option("--queries", type=click.Path(path_type=Path), help="Judged queries (BEIR queries.jsonl) for the gate.")
@click.option("--qrels", type=click.Path(path_type=Path), help="Relevance judgements (BEIR TSV or TREC) for the gate.")
@click.option("-k", "k", default=10, show_default=True, help="Cut-off of the gate's evaluation.")
@click.option("--force", is_flag=True, help="Cut over even when the gate refuses (recorded in the audit log).")
@click.option("--correction", default="holm", show_default=True, metavar="holm|bh|none", help=CORRECTION_HELP)
@click.option("--allow-underpowered", is_flag=True, help=UNDERPOWERED_HELP)
@click.option(
    "--report-json", type=click.Path(path_type=Path), help="Write the gate's evaluation as JSON (as eval does)."
)
@click.option("--report-md", type=click.Path(path_type=Path), help="Write the gate's evaluation as Markdown.")
@click.option("--report-html", type=click.Path(path_type=Path), help="Write the gate's evaluation as one HTML file.")
@runtime_options
@click.option(
    "--precision",
    type=click.Choice(sorted(RUNTIME_PRECISIONS)),
    help="Run the model at this precision (default fp16 on CUDA, fp32 elsewhere).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default=None,
    help="Where the build reads and embeds: this process (local) or a Ray cluster (ray); default [apply] executor.",
)
@click.option(
    "--ray-address",
    metavar="ADDRESS",
    help="The Ray cluster for --executor ray (ray://HOST:10001); default RAY_ADDRESS, else a local Ray.",
)
@run_command
def apply_cmd(
    ctx: Ctx,
    plan_file: Path | None,
    resume_collection: str | None,
    cutover: bool,
    no_delete: bool,
    gate: str | None,
    queries: Path | None,
    qrels: Path | None,
    k: int,
    force: bool,
    correction: str,
    allow_underpowered: bool,
    report_json: Path | None,
    report_md: Path | None,
    report_html: Path | None,
    executor: str | None,
    ray_address: str | None,
    **kw: Any,
) -> None:
    """Build, verify, gate and cut over a plan. Re-running it after a crash resumes."""
    from reindexer.errors import GateRefusedError
    from reindexer.reports import ReportFiles

    _use_runtime(ctx, kw)
    if kw.get("precision"):
        ctx.ws.use_runtime(precision=kw["precision"])
    if (plan_file is None) == (resume_collection is None):
        raise UsageError("pass a plan file, or --resume COLLECTION")
    if bool(queries) != bool(qrels):
        raise UsageError("--queries and --qrels go together")
    if cutover:
        ctx.require_confirmable("apply cuts over at the end (or pass --no-cutover)")
    try:
        result = commands.apply_from(
            ctx.ws,
            plan_file,
            resume=resume_collection,
            reports=ReportFiles(report_json, report_md, report_html),
            cutover=cutover,
            confirm=ctx.confirm,
            delete_missing=not no_delete,
            queries=queries,
            qrels=qrels,
            gate=gate,
            force=force,
            k=k,
            correction=correction,
            allow_underpowered=allow_underpowered,
            executor=executor,
            ray_address=ray_address,
        )
    except GateRefusedError as exc:
        if exc.result is not None:  # still say what was built and verified, then exit 6
            _show_applied(ctx, exc.result)
        raise
    _show_applied(ctx, result)


def _show_applied(ctx: Ctx, result: commands.ApplyResult) -> None:
    if result.report_notice:
        err.print(result.report_notice, highlight=False)
    ctx.emit(result, lambda r: render.apply_result(out, r))


@cli.command("cutover")
@click.argument("collection")
@click.option("--to", "to", metavar="VERSION", help="Version number (3, v3) or physical name; default: newest built.")
@run_command
def cutover_cmd(ctx: Ctx, collection: str, to: str | None) -> None:
    """Point COLLECTION's alias at a built version, atomically."""
    ctx.require_confirmable("cutover")
    r = commands.cutover(ctx.ws, collection, to=to, confirm=ctx.confirm)
    ctx.emit(
        r,
        lambda r: out.print(
            f"{r['collection']} -> {r['live']}"
            + (
                " (completed the interrupted cut-over)"
                if r.get("completed")
                else ""
                if r["changed"]
                else " (unchanged)"
            )
            + (f"\n  catch-up: {r['catch_up']}" if r.get("catch_up") else "")
        ),
    )


@cli.command("rollback")
@click.argument("collection")
@click.option("--no-catch-up", is_flag=True, help="Skip re-embedding documents changed since the cut-over.")
@run_command
def rollback_cmd(ctx: Ctx, collection: str, no_catch_up: bool) -> None:
    """Point COLLECTION back at the version that was live before."""
    ctx.require_confirmable("rollback")
    r = commands.rollback(ctx.ws, collection, confirm=ctx.confirm, catch_up=not no_catch_up)
    ctx.emit(
        r,
        lambda r: out.print(
            f"rolled back {r['collection']}: {r.get('from')} -> {r['live']}"
            + (
                f" ({r['re_embedded']} re-embedded, {r['deleted']} deleted)"
                if r.get("changed")
                else " (completed the interrupted rollback)"
                if r.get("completed")
                else " (unchanged)"
            )
            + (f"\n  catch-up: {r['catch_up']}" if r.get("catch_up") else "")
        ),
    )


@cli.command("sync")
@click.argument("collection")
@source_options
@click.option("--since", help="Only rows updated after this value, or 'last' for the stored watermark (SQL sources).")
@click.option("--no-delete", is_flag=True, help="Keep documents that are gone from the source.")
@runtime_options
@click.option(
    "--wait", type=click.FloatRange(min=0), default=0, help="Seconds to wait for a held lease (default: fail at once)."
)
@run_command
def sync_cmd(ctx: Ctx, collection: str, since: str | None, no_delete: bool, wait: float, **kw: Any) -> None:
    """Embed only new and changed documents into COLLECTION (and its built shadows); delete removed ones."""
    _use_runtime(ctx, kw)
    from reindexer.sync import number_or_text, sync

    r = sync(
        ctx.ws,
        collection,
        source=_source(kw, ctx, collection),
        delete_missing=not no_delete,
        since=since if since is None or since == "last" else number_or_text(since),
        wait=wait,
    )

    def show(r) -> None:
        for version, s in r.versions.items():
            out.print(
                f"{r.collection} {version}: {s['embedded']} embedded, {s['deleted']} deleted, "
                f"{s['unchanged']} unchanged (source {r.source})"
            )
        if r.watermark is not None:
            out.print(f"watermark now {r.watermark}")

    ctx.emit(r, show)


@cli.command("verify")
@click.argument("collection")
@click.option("--version", "version_ref", help="Version to check (default: live).")
@click.option("--fix", is_flag=True, help="Repair: re-embed missing or mis-tagged points, delete strays.")
@source_options
@run_command
def verify_cmd(ctx: Ctx, collection: str, version_ref: str | None, fix: bool, **kw: Any) -> None:
    """Reconcile ledger, store and source: missing, extra and mis-tagged points, counts."""
    from reindexer.errors import EXIT_VERIFICATION_FAILED
    from reindexer.sync import verify

    ctx.read_only = not fix
    r = verify(ctx.ws, collection, version_ref, fix=fix, source=_source(kw, ctx, collection))

    def show(r) -> None:
        before = r.before
        out.print(
            f"{r.collection} v{r.version}: {before['store_count']} points, ledger {before['ledger_count']}"
            + (f", source {before['source_count']}" if before["source_count"] is not None else "")
        )
        for problem in before["problems"]:
            out.print(f"  [red]problem:[/] {problem}")
        if r.after is not None:
            out.print("repaired" if r.fixed else "[red]still broken after repair:[/]")
            for problem in r.after["problems"]:
                out.print(f"  {problem}")
        elif before["ok"]:
            out.print("[green]consistent[/]")

    ctx.emit(r, show)
    if not r.ok:
        sys.exit(EXIT_VERIFICATION_FAILED)


@cli.command("status")
@click.argument("collection", required=False)
@run_command
def status_cmd(ctx: Ctx, collection: str | None) -> None:
    """Live version, model, counts and shadows of each logical collection."""
    ctx.read_only = True
    rows = commands.status(ctx.ws, collection)

    def show(rows: list) -> None:
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
            for repair in r.get("repairs", []):
                out.print(
                    f"{r['collection']}: {'repaired' if repair['recorded'] else 'not repaired'}: {repair['message']}"
                )

    ctx.emit(rows, show)


@cli.command("history")
@click.argument("collection")
@click.option("--limit", default=50, show_default=True)
@run_command
def history_cmd(ctx: Ctx, collection: str, limit: int) -> None:
    """Versions of COLLECTION and the audit log of what was done to it."""
    ctx.read_only = True
    h = commands.history(ctx.ws, collection, limit)

    def show(h: dict) -> None:
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
            e.add_row(
                ev["at"], ev["action"], ev["result"], f"{ev['user']}@{ev['host']}", escape(key_values(ev["detail"]))
            )
        out.print(e)
        if h["events"]:
            out.print("[dim]full details: reindex history --json[/]")

    ctx.emit(h, show)


@cli.command("gc")
@click.argument("collection")
@click.option("--keep", type=int, default=None, help="Retired versions to keep (default from config, 2).")
@run_command
def gc_cmd(ctx: Ctx, collection: str, keep: int | None) -> None:
    """Drop retired versions of COLLECTION beyond the newest KEEP."""
    ctx.require_confirmable("gc")
    r = commands.gc(ctx.ws, collection, keep, confirm=ctx.confirm)
    ctx.emit(
        r, lambda r: out.print(f"dropped: {', '.join(r['dropped']) or 'nothing'}; kept: {', '.join(r['kept']) or '-'}")
    )


@cli.command("adopt")
@click.argument("collection")
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path), help="The model that made it.")
@click.option("--name", help="Name to register the model under.")
@model_settings_options
@click.option("--text-field", multiple=True, help="Payload path of the text (default: text); repeatable.")
@click.option(
    "--text", "text_template", metavar="TEMPLATE", help="Text template over payload paths, e.g. '{title}. {text}'."
)
@click.option("--sample", default=32, show_default=True, help="Points to re-embed and compare.")
@click.option(
    "--min-cosine",
    type=float,
    help="Agreement needed for each sampled point [default: 0.99; 0.97 for onnx-int8, whose vectors vary by batch]",
)
@click.option("--vector-name", help="The dense vector the model made, in a collection with several.")
@run_command
def adopt_cmd(
    ctx: Ctx,
    collection: str,
    model_path: Path,
    name,
    text_field,
    text_template,
    sample,
    min_cosine,
    vector_name,
    **kw: Any,
) -> None:
    """Tag a collection made outside reindexer with the model that made it."""
    text_field = policy.text_field(text_field, text_template)
    r = commands.adopt(
        ctx.ws,
        collection,
        str(model_path),
        settings=_settings(kw, ctx),
        text_field=text_field,
        sample=sample,
        min_cosine=min_cosine,
        name=name,
        vector_name=vector_name,
    )
    ctx.emit(
        r,
        lambda r: out.print(
            f"adopted {r['collection']} ({r['physical']}) as v{r['version']} of {r['model']}"
            + (f", vector {r['vector']!r}" if r["vector"] else "")
            + ": "
            f"{r['sample']} sampled vectors agree (min cosine {r['min_cosine']}), "
            + (
                f"{r['points_tagged']} points tagged"
                if r["tag"] == "point"
                else "model recorded in the collection's properties (no field for a per-point tag)"
            )
        ),
    )


@cli.command("forget")
@click.argument("collection")
@run_command
def forget_cmd(ctx: Ctx, collection: str) -> None:
    """Remove reindexer's records of COLLECTION; the store is left as it is."""
    ctx.require_confirmable("forget")
    r = commands.forget(ctx.ws, collection, confirm=ctx.confirm)
    ctx.emit(
        r,
        lambda r: out.print(
            f"forgot {r['collection']}: {', '.join(r['versions']) or 'no versions'}; still in the store: "
            f"{', '.join(r['left_in_store']) or 'nothing'}"
            if r["forgotten"]
            else f"{r['collection']}: nothing forgotten"
        ),
    )


@cli.command("eval")
@click.argument("collection")
@click.option("--queries", type=click.Path(path_type=Path), help="BEIR queries.jsonl (_id, text).")
@click.option("--qrels", type=click.Path(path_type=Path), help="Qrels: BEIR TSV (query-id corpus-id score) or TREC.")
@click.option("--log", "log", type=click.Path(path_type=Path), help="Label-free: a query log (lines or JSONL) instead.")
@click.option(
    "--from-traffic",
    is_flag=True,
    help="Label-free: live queries the Searcher or `reindex serve` mirrored to the shadow.",
)
@click.option(
    "--since", "since", help="With --from-traffic: records since an ISO time or a duration back (30m, 6h, 2d)."
)
@click.option("--shadow", "shadow", help="With --from-traffic: the shadow version (default: the newest mirrored).")
@click.option(
    "--versions",
    help="live,shadow (default; the live version alone when there is no shadow), one version "
    "(v1: absolute metrics, the baseline) or several (v3,v4,v5); "
    "the first is the baseline.",
)
@click.option(
    "-k",
    "k",
    default=10,
    show_default=True,
    help="Headline cut-off: nDCG@K heads the report and ranks the worst queries.",
)
@click.option(
    "--at", "at", metavar="K1,K2,...", help="Cut-offs to report, e.g. 1,3,5,10,100 (default: 1, 3, 5 ... up to -k)."
)
@click.option("--depth", type=click.IntRange(min=1), help="Results each query asks for (default: the largest cut-off).")
@click.option("--per-query", is_flag=True, help="Put per-query values in the JSON (always for a single version).")
@click.option(
    "--pipelines",
    metavar="P1,P2,...",
    help="Judged: also run each version as the application may: lexical (BM25 over the texts), hybrid "
    "(dense and BM25 fused by RRF); dense always runs. Needs the hybrid extra.",
)
@click.option(
    "--rerank",
    type=click.Path(path_type=Path),
    help="A sentence-transformers CrossEncoder folder: the dense+rerank and hybrid+rerank pipelines' second stage.",
)
@click.option("--rerank-top", type=click.IntRange(min=1), help="How many first-stage results it rescores (default 50).")
@click.option("--gate", help="Judge each candidate with this gate.")
@click.option(
    "--calibrate",
    is_flag=True,
    help="A/A calibration: run the gate (given or configured) on A/A comparisons of the live version (random "
    "halves of the judged queries; with --versions live,vN against vN, a rebuilt copy) and report each clause's "
    "false-positive rate with a Clopper-Pearson interval.",
)
@click.option("--resamples", type=int, help="With --calibrate: how many A/A comparisons (default 1000).")
@click.option("--correction", default="holm", show_default=True, metavar="holm|bh|none", help=CORRECTION_HELP)
@click.option("--allow-underpowered", is_flag=True, help=UNDERPOWERED_HELP)
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap and randomisation tests.")
@click.option(
    "--report-json", type=click.Path(path_type=Path), help="Write the JSON report (schema reindexer.evaluation/v1)."
)
@click.option("--report-md", type=click.Path(path_type=Path), help="Write a Markdown report.")
@click.option("--report-html", type=click.Path(path_type=Path), help="Write a self-contained HTML report.")
@run_command
def eval_cmd(
    ctx: Ctx,
    collection: str,
    queries,
    qrels,
    log,
    from_traffic,
    since,
    shadow,
    versions,
    k,
    at,
    depth,
    per_query,
    pipelines,
    rerank,
    rerank_top,
    gate,
    calibrate,
    resamples,
    correction,
    allow_underpowered,
    seed,
    report_json,
    report_md,
    report_html,
) -> None:
    """A/B(/n) retrieval quality of index versions, each searched with its own model."""
    from reindexer.errors import EXIT_GATE_REFUSED
    from reindexer.reports import ReportFiles

    ctx.read_only = True
    request = commands.EvalRequest(
        queries, qrels, log, from_traffic, since, shadow, versions, k, _cutoffs(at), depth, per_query, gate, seed,
        pipelines=pipelines, rerank=rerank, rerank_top=rerank_top, correction=correction,
        allow_underpowered=allow_underpowered,
    )  # fmt: skip
    reports = ReportFiles(report_json, report_md, report_html)
    if calibrate or resamples is not None:
        return _calibration(ctx, collection, request, calibrate, resamples, reports)
    outcome = commands.evaluate(ctx.ws, collection, request, reports)
    ctx.emit(outcome, lambda o: render.evaluation(out, o, per_query_hint=report_json is None))
    if outcome.refused:
        sys.exit(EXIT_GATE_REFUSED)


def _calibration(ctx: Ctx, collection: str, request, calibrate: bool, resamples: int | None, reports) -> None:
    """``eval --calibrate``: the gate's A/A calibration, printed (as JSON with --json); it writes no report file."""
    from reindexer.evaluation.calibrate import DEFAULT_RESAMPLES, check_resamples
    from reindexer.evaluation.calibrate import render as calibration_lines

    if not calibrate:
        raise UsageError("--resamples goes with --calibrate", hint="add --calibrate, or drop --resamples")
    if reports.json or reports.md or reports.html:
        raise UsageError("--calibrate writes no report file", hint="drop --report-*; --json prints the calibration")
    count = DEFAULT_RESAMPLES if resamples is None else check_resamples(resamples)  # refused before the store opens
    found = commands.calibrate(ctx.ws, collection, request, count)
    ctx.emit(found, lambda c: out.print("\n".join(calibration_lines(c)), highlight=False))


def _cutoffs(text: str | None) -> list[int] | None:
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


@cli.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing reindex.toml.")
def init_cmd(force: bool) -> None:
    """Write a commented starter reindex.toml in the current folder."""
    from reindexer.config import write_starter

    try:
        path = write_starter(Path.cwd(), force=force)
    except ReindexError as exc:
        err.print(f"error: {exc}")
        sys.exit(exc.exit_code)
    out.print(f"wrote {path}")


@cli.group("config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("show")
@run_command
def config_show(ctx: Ctx) -> None:
    """Print the effective configuration, with secrets masked."""
    from reindexer.config import effective, load_config

    data = effective(load_config(store_url=ctx.store_opt, state_url=ctx.state_opt))
    ctx.emit(data, lambda d: out.print_json(data=d))


@cli.group("state")
def state_group() -> None:
    """The state database itself: its schema revision."""


@state_group.command("upgrade")
@run_command
def state_upgrade(ctx: Ctx) -> None:
    """Upgrade the state database's schema to this reindexer's (needed once for a shared PostgreSQL)."""
    done = commands.upgrade_state(state=ctx.state_opt)
    ctx.emit(
        done,
        lambda d: out.print(
            f"{d.url}: schema revision {d.from_revision or 'none (made before migrations)'} -> {d.to_revision}"
            + (f" (backup: {d.backup})" if d.backup else "")
            if d.upgraded
            else f"{d.url}: already at {d.to_revision}"
        ),
    )


@cli.command("migrate")
@click.argument("collection")
@run_command
def migrate_cmd(ctx: Ctx, collection: str) -> None:
    """Move an adopted collection behind an alias of its own name (a copy, no re-embedding)."""
    ctx.require_confirmable("migrate drops the original collection after copying it")
    r = commands.migrate(ctx.ws, collection, confirm=ctx.confirm)
    ctx.emit(
        r,
        lambda r: out.print(
            f"{r['collection']} is now an alias of {r['copied_to']} ("
            + ("completed the interrupted migrate; " if r.get("completed") else "")
            + f"{r['copied']} points copied; the name was missing for {r['name_missing_ms']} ms)"
            if r["migrated"]
            else f"copied to {r['copied_to']}; not migrated"
        ),
    )


@cli.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 only where something in front guards it (a pod, a proxy).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one).")
@click.option(
    "--shadow-sample",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of live queries mirrored to the shadow version, off the answering path.",
)
@click.option(
    "--refresh",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between re-resolutions of each alias (0: every request).",
)
@click.option(
    "--max-k", type=click.IntRange(min=1), default=100, show_default=True, help="Largest k a request may ask for."
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=65536,
    show_default=True,
    help="Largest request body; larger ones get 413.",
)
@click.option(
    "--preload",
    "preload",
    multiple=True,
    metavar="COLLECTION",
    help="Load COLLECTION's live model at start (repeatable); /readyz waits for it.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="Log each request to stderr.")
@click.option(
    "--rerank",
    type=click.Path(path_type=Path),
    help="A CrossEncoder folder that rescores each answer's top --rerank-top (a request's \"rerank\": false skips it).",
)
@click.option("--rerank-top", type=click.IntRange(min=1), default=50, show_default=True)
@run_command
def serve_cmd(
    ctx: Ctx,
    host: str,
    port: int,
    shadow_sample: float,
    refresh: float,
    max_k: int,
    max_body_bytes: int,
    preload: tuple[str, ...],
    log_level: str,
    access_log: bool,
    rerank: Path | None,
    rerank_top: int,
) -> None:
    """Answer searches over HTTP: POST /collections/NAME/search, with /healthz, /readyz, /metrics.

    The bearer token, when wanted, comes from REINDEX_SERVE_TOKEN or the file named by
    REINDEX_SERVE_TOKEN_FILE, never from an option (options show in process lists).
    """
    try:
        from reindexer import serve
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("fastapi", "starlette", "uvicorn", "prometheus_client"):
            raise
        raise UsageError(
            f"reindex serve needs the serve extra ({exc.name} is not installed)", hint='pip install "reindexer[serve]"'
        ) from None
    token = serve.token_from_env()
    reranking: dict[str, Any] = {"rerank": str(check_cross_encoder(rerank)), "rerank_top": rerank_top} if rerank else {}
    sock = serve.listen(host, port)  # first: a taken port fails before the store is opened
    serve.hold_store(ctx.ws)
    app = serve.create_app(
        ctx.ws,
        token=token,
        max_k=max_k,
        max_body_bytes=max_body_bytes,
        shadow_sample=shadow_sample,
        refresh=refresh,
        preload=preload,
        **reranking,
    )
    bound_host, bound_port = sock.getsockname()[:2]
    err.print(
        f"reindex serve: http://{bound_host}:{bound_port} over {ctx.ws.store_url}; "
        + ("bearer token required" if token else "no token (set REINDEX_SERVE_TOKEN to require one)"),
        highlight=False,
    )
    if not token and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[bold yellow]warning:[/] listening on {host} without a token: anyone who reaches it can search",
            markup=True,
            highlight=False,
        )
    serve.run_server(app, sock, log_level=log_level, access_log=access_log)
    err.print("reindex serve: stopped", highlight=False)


@cli.command("demo")
@click.option("--keep", "keep_dir", type=click.Path(path_type=Path), help="Work in this folder and keep it.")
@run_command
def demo_cmd(ctx: Ctx, keep_dir: Path | None) -> None:
    """Run the whole flow offline on the embedded default, printing each step."""
    from reindexer.demo import run_demo

    # the demo's rules span the console: a log gets 100 columns, not LOG_WIDTH
    run_demo(keep_dir=keep_dir, console=out if out.is_terminal else Console(soft_wrap=True, width=100))


def main() -> None:
    try:
        cli.main(prog_name="reindex", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
