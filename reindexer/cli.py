"""`reindex`: a thin click layer over reindexer.commands.

Parses options, calls one library function, prints the result through
reindexer.render: a table for people on stdout, or JSON with --json. Progress and
logs go to stderr. Every ReindexError becomes one line on stderr and its
documented exit code (reindexer.cli_context.run_command). The options several
commands share, and what they parse into, are in reindexer.cli_options.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from reindexer import commands, policy, render
from reindexer.build.incremental import number_or_text
from reindexer.cli_context import Ctx, ReindexGroup, err, out, run_command
from reindexer.cli_options import (
    apply_options,
    cutoffs,
    eval_options,
    index_options,
    index_settings,
    model_settings,
    model_settings_options,
    runtime_options,
    serve_options,
    source_options,
    source_spec,
    use_runtime,
)
from reindexer.errors import EXIT_USAGE, ReindexError, UsageError
from reindexer.rerank import check_cross_encoder

# gRPC's fork handlers (on in grpcio's builds) restart its poller thread in a child made by fork(),
# which subprocess uses where it cannot vfork (pgserver starts pg_ctl as another user), and from
# grpcio 1.80 that child can die of SIGSEGV before its exec when a Milvus channel is open
# (grpc/grpc#43055; a clean-clone test run lost pg_ctl so). Nothing this tool forks uses gRPC in
# the child, so the CLI turns the handlers off unless the environment says otherwise.
# gRPC reads the variable when it is first imported; none of the imports above imports it
# (tests/test_grpc_fork.py holds that).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


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
        settings=model_settings(kw, ctx),
        base_model=base_model,
        train_data=train_data,
        run_id=run_id,
    )
    ctx.emit(mv, lambda m: render.model_registered(out, m))


@model.command("list")
@run_command
def model_list(ctx: Ctx) -> None:
    """List registered model versions."""
    ctx.read_only = True
    models = commands.model_list(ctx.ws)
    ctx.emit(models, lambda rows: render.model_list(out, rows))


# -- plan / apply ---------------------------------------------------------------
@cli.command("plan")
@click.argument("collection")
@click.option("--model", "model_path", type=click.Path(path_type=Path), help="Model folder (registered automatically).")
@click.option("--model-ref", help="A registered model: name, name@fingerprint or fingerprint prefix.")
@click.option("--name", "model_name", help="Name to register the model under.")
@model_settings_options
@source_options
@click.option("--metric", type=click.Choice(["cosine", "dot", "euclid"]), help="Distance of the new index.")
@index_options
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
    lexical,
    gate,
    vector_name,
    output,
    **kw: Any,
) -> None:
    """Compute what putting a model behind COLLECTION takes, as a reviewable plan."""
    use_runtime(ctx, kw)
    settings = model_settings(kw, ctx)
    source = source_spec(kw, ctx, collection)
    if model_path and model_ref:
        raise UsageError("pass either --model or --model-ref, not both")
    index_params = index_settings(kw)
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
    ctx.emit(json.loads(p.to_json()), lambda _: render.plan(out, p, output))


@cli.command("apply")
@click.argument("plan_file", required=False, type=click.Path(path_type=Path))
@apply_options
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
    full_verify: bool,
    **kw: Any,
) -> None:
    """Build, verify, gate and cut over a plan. Re-running it after a crash resumes."""
    from reindexer.errors import GateRefusedError
    from reindexer.report_files import ReportFiles

    use_runtime(ctx, kw)
    if kw.get("precision"):
        ctx.ws.use_runtime(precision=kw["precision"])
    commands.check_apply_target(plan_file, resume_collection)
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
            full_verify=full_verify,
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
    ctx.emit(r, lambda r: render.cutover(out, r))


@cli.command("rollback")
@click.argument("collection")
@click.option("--no-catch-up", is_flag=True, help="Skip re-embedding documents changed since the cut-over.")
@run_command
def rollback_cmd(ctx: Ctx, collection: str, no_catch_up: bool) -> None:
    """Point COLLECTION back at the version that was live before."""
    ctx.require_confirmable("rollback")
    r = commands.rollback(ctx.ws, collection, confirm=ctx.confirm, catch_up=not no_catch_up)
    ctx.emit(r, lambda r: render.rollback(out, r))


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
    use_runtime(ctx, kw)
    r = commands.sync(
        ctx.ws,
        collection,
        source=source_spec(kw, ctx, collection),
        delete_missing=not no_delete,
        since=since if since is None or since == "last" else number_or_text(since),
        wait=wait,
    )
    ctx.emit(r, lambda r: render.sync_result(out, r))


@cli.command("verify")
@click.argument("collection")
@click.option("--version", "version_ref", help="Version to check (default: live).")
@click.option("--fix", is_flag=True, help="Repair: re-embed missing or mis-tagged points, delete strays.")
@click.option(
    "--full", is_flag=True, help="Check every point (default: counts and a random sample, past 4,603 points)."
)
@source_options
@run_command
def verify_cmd(ctx: Ctx, collection: str, version_ref: str | None, fix: bool, full: bool, **kw: Any) -> None:
    """Reconcile ledger, store and source: counts, then missing, extra and mis-tagged points."""
    from reindexer.errors import EXIT_VERIFICATION_FAILED

    ctx.read_only = not fix
    r = commands.verify(ctx.ws, collection, version_ref, fix=fix, source=source_spec(kw, ctx, collection), full=full)
    ctx.emit(r, lambda r: render.verify_result(out, r))
    if not r.ok:
        sys.exit(EXIT_VERIFICATION_FAILED)


@cli.command("status")
@click.argument("collection", required=False)
@run_command
def status_cmd(ctx: Ctx, collection: str | None) -> None:
    """Live version, model, counts and shadows of each logical collection."""
    ctx.read_only = True
    rows = commands.status(ctx.ws, collection)
    ctx.emit(rows, lambda rows: render.status(out, rows))


@cli.command("history")
@click.argument("collection")
@click.option("--limit", default=50, show_default=True)
@run_command
def history_cmd(ctx: Ctx, collection: str, limit: int) -> None:
    """Versions of COLLECTION and the audit log of what was done to it."""
    ctx.read_only = True
    h = commands.history(ctx.ws, collection, limit)
    ctx.emit(h, lambda h: render.history(out, h))


@cli.command("gc")
@click.argument("collection")
@click.option("--keep", type=int, default=None, help="Retired versions to keep (default from config, 2).")
@run_command
def gc_cmd(ctx: Ctx, collection: str, keep: int | None) -> None:
    """Drop retired versions of COLLECTION beyond the newest KEEP."""
    ctx.require_confirmable("gc")
    r = commands.gc(ctx.ws, collection, keep, confirm=ctx.confirm)
    ctx.emit(r, lambda r: render.gc(out, r))


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
        settings=model_settings(kw, ctx),
        text_field=text_field,
        sample=sample,
        min_cosine=min_cosine,
        name=name,
        vector_name=vector_name,
    )
    ctx.emit(r, lambda r: render.adopted(out, r))


@cli.command("forget")
@click.argument("collection")
@run_command
def forget_cmd(ctx: Ctx, collection: str) -> None:
    """Remove reindexer's records of COLLECTION; the store is left as it is."""
    ctx.require_confirmable("forget")
    r = commands.forget(ctx.ws, collection, confirm=ctx.confirm)
    ctx.emit(r, lambda r: render.forgotten(out, r))


@cli.command("eval")
@click.argument("collection")
@eval_options
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
    from reindexer.report_files import ReportFiles

    ctx.read_only = True
    request = commands.EvalRequest(
        queries, qrels, log, from_traffic, since, shadow, versions, k, cutoffs(at), depth, per_query, gate, seed,
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

    if not calibrate:
        raise UsageError("--resamples goes with --calibrate", hint="add --calibrate, or drop --resamples")
    if reports.json or reports.md or reports.html:
        raise UsageError("--calibrate writes no report file", hint="drop --report-*; --json prints the calibration")
    count = DEFAULT_RESAMPLES if resamples is None else check_resamples(resamples)  # refused before the store opens
    found = commands.calibrate(ctx.ws, collection, request, count)
    ctx.emit(found, lambda c: render.calibration(out, c))


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
    ctx.emit(done, lambda d: render.state_upgraded(out, d))


@cli.command("migrate")
@click.argument("collection")
@run_command
def migrate_cmd(ctx: Ctx, collection: str) -> None:
    """Move an adopted collection behind an alias of its own name (a copy, no re-embedding)."""
    ctx.require_confirmable("migrate drops the original collection after copying it")
    r = commands.migrate(ctx.ws, collection, confirm=ctx.confirm)
    ctx.emit(r, lambda r: render.migrated(out, r))


@cli.command("serve")
@serve_options
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
        from reindexer import serve, serve_process
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("fastapi", "starlette", "uvicorn", "prometheus_client"):
            raise
        raise UsageError(
            f"reindex serve needs the serve extra ({exc.name} is not installed)", hint='pip install "reindexer[serve]"'
        ) from None
    token = serve.token_from_env()
    reranking: dict[str, Any] = {"rerank": str(check_cross_encoder(rerank)), "rerank_top": rerank_top} if rerank else {}
    sock = serve_process.listen(host, port)  # first: a taken port fails before the store is opened
    serve_process.hold_store(ctx.ws)
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
    serve_process.run_server(app, sock, log_level=log_level, access_log=access_log)
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
