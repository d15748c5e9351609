"""One function per verb. The CLI parses, calls one of these, and prints what it returns.

Every function takes a Workspace first and returns plain data (dicts, lists or
dataclasses with ``to_dict``), so Python callers get the same behaviour as the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reindexer import policy
from reindexer.adapters.base import DOC_ID_KEY, META_VECTOR, MODEL_KEY
from reindexer.catchup import CatchUpStats, catch_up_from_live
from reindexer.embedding import ModelSettings, check_model_folder, cosine_rows
from reindexer.errors import (
    ConflictError,
    DriftError,
    GateRefusedError,
    NotFoundError,
    UsageError,
    VerificationError,
)
from reindexer.estimate import record_run
from reindexer.executor import (
    MAX_CATCHUP_PASSES,
    Reservoir,
    SyncStats,
    copy_into,
    create_physical,
    finish_run,
    require_verified,
    start_run,
    swap_alias,
    sync_into,
    verify_version,
    version_metadata,
)
from reindexer.idset import IdSet
from reindexer.inference_backends import reembed_min_cosine
from reindexer.killpoints import kill_point
from reindexer.lookup import find_version
from reindexer.lookup import managed_collection as _collection
from reindexer.model_registry import describe_model, embedder_for, register_model
from reindexer.planner import (
    Plan,
    check_plan,
    check_recorded,
    decide,
    gather_inputs,
    live_version,
    physical_name,
    record_plan,
)
from reindexer.reconcile import liveness_changes, new_intent, pending_key, reconcile, reconcile_readonly
from reindexer.schema import carry_other_vectors
from reindexer.sources.base import content_hash, extract_text
from reindexer.sources.spec import SourceSpec, open_source
from reindexer.state import IndexVersion, LogicalCollection, ModelVersion, PlanRecord
from reindexer.state.models import iso, saved_id, utcnow
from reindexer.workspace import Workspace

if TYPE_CHECKING:
    from reindexer.evaluation.runner import EvaluationResult
    from reindexer.reports import ReportFiles

ConfirmFn = Callable[[str], bool]
SHADOW_STATUSES = ("building", "built", "verified", "evaluated")
CUTOVER_READY = ("built", "verified", "evaluated", "retired")
RESUMABLE = ("building", "built", "verified", "evaluated")


def _always(_: str) -> bool:
    return True


# -- models -------------------------------------------------------------------
def model_register(
    ws: Workspace, path: str, name: str | None = None, settings: ModelSettings | None = None, **training: Any
) -> ModelVersion:
    check_model_folder(path)  # a path that is no model leaves no new state behind
    model = register_model(ws.state, path, name=name, settings=settings, **training)
    ws.state.audit("model-register", None, model=model.label, path=model.path)
    return model


def model_list(ws: Workspace) -> list[ModelVersion]:
    return ws.state.list_models()


# -- plan and apply -----------------------------------------------------------
def plan(
    ws: Workspace, collection: str, *, source: SourceSpec | str | None = None, gate: str | None = None, **options: Any
) -> Plan:
    """What putting a model behind ``collection`` takes; ``source`` and ``gate`` default as configured."""
    # No state yet means no collection: reading one must not create the file a refused plan leaves behind.
    lc = ws.state.get_collection(ws.store_url, collection) if ws.state_exists() else None
    reconcile_readonly(ws, lc, "plan")
    options["vector_name"] = policy.vector_name(ws.config, collection, options.get("vector_name"))
    options["lexical"] = policy.lexical(ws.config, collection, options.get("lexical"))
    inputs = gather_inputs(
        ws,
        collection,
        source=policy.source(ws.config, collection, source),
        gate=policy.plan_gate(ws.config, collection, gate),
        **options,
    )
    return record_plan(ws, decide(inputs), inputs)


def source_spec(ws: Workspace, collection: str, text: str | None = None, **pieces: Any) -> SourceSpec | None:
    """A source from command-line pieces (see ``policy.source_from_options``), or None when none was given.

    Without a text option it reads the text the way the collection records it.
    """
    lc = ws.state.get_collection(ws.store_url, collection) if ws.state_exists() else None
    return policy.source_from_options(
        ws.config, collection, text, recorded_text_field=lc.text_field if lc else None, **pieces
    )


@dataclass
class ApplyResult:
    plan_id: str
    collection: str
    mode: str
    version: int | None
    physical: str | None
    stats: dict[str, int] = field(default_factory=dict)
    verification: dict[str, Any] | None = None
    cut_over: bool = False
    live: str | None = None
    message: str = ""
    #: Nothing was done because the plan had been applied before (re-run, or `apply --resume` after a finished run).
    already_applied: bool = False
    evaluation: dict[str, Any] | None = None  # the headline numbers (ab.summary)
    traffic: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    repairs: list[dict[str, Any]] = field(default_factory=list)
    #: The gate's whole judged evaluation, for reports and tables; in JSON as ``report``.
    evaluation_result: EvaluationResult | None = field(default=None, repr=False)
    #: Why no report file was written although some were asked for (reindexer.reports).
    report_notice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from reindexer.evaluation import report
        from reindexer.reports import report_gate

        data = {k: v for k, v in self.__dict__.items() if k not in ("evaluation_result", "report_notice")}
        if self.evaluation_result is not None:
            data["report"] = report.to_dict(self.evaluation_result, report_gate(self.gate))
        return data


def _version_for_plan(ws: Workspace, plan: Plan) -> IndexVersion | None:
    with ws.state.session() as s:
        from sqlmodel import select

        return s.exec(select(IndexVersion).where(IndexVersion.plan_id == plan.id)).first()


def latest_unfinished_plan(ws: Workspace, collection: str) -> Plan:
    """The plan of the newest version of ``collection`` that an apply left short of live.

    A crash can stop an apply anywhere from the first batch to the alias swap, so
    a version still building, built (not yet verified), verified or evaluated
    counts, if no newer version has been live. Resuming it does what re-running
    its plan file does.
    """
    plan = _unfinished_plan(ws, _collection(ws, collection))
    if plan is None:
        raise NotFoundError(f"no interrupted apply to resume for {collection!r}")
    return plan


def _unfinished_plan(ws: Workspace, lc: LogicalCollection) -> Plan | None:
    """latest_unfinished_plan's search, as the state records it; None when no apply was left short of live."""
    for v in reversed(ws.state.versions(saved_id(lc))):
        if v.status in ("live", "retired", "dropped"):
            break
        if v.status in RESUMABLE and v.plan_id:
            record = _plan_record(ws, v.plan_id)
            if record is None:
                raise NotFoundError(f"v{v.version} was built by plan {v.plan_id[:12]}, which the state no longer holds")
            return Plan.from_dict(record.body)
    return None


def _plan_record(ws: Workspace, plan_id: str) -> PlanRecord | None:
    with ws.state.session() as s:
        return s.get(PlanRecord, plan_id)


def _finished_apply(ws: Workspace, lc: LogicalCollection) -> ApplyResult:
    """`apply --resume` with no interrupted apply: the newest apply that finished, and what is live now.

    A run killed after its last state write, or a scheduled retry after a run that succeeded,
    finds its plan applied: that is done, not "not found". Reconciled first, as every verb
    that reads liveness is; the live version is the one the store's alias names. NotFoundError
    (exit 3) only when no apply of the collection ever went live.
    """
    rec = reconcile_readonly(ws, lc, "apply")
    versions = rec.view(ws.state.versions(saved_id(lc)))
    applied = next((v for v in reversed(versions) if v.plan_id and v.status in ("live", "retired", "dropped")), None)
    if applied is None or applied.plan_id is None:
        raise NotFoundError(
            f"no interrupted apply to resume for {lc.name!r}, and no apply of it ever finished",
            hint=f"make a plan with `reindex plan {lc.name} ...` and run it with `reindex apply PLAN_FILE`",
        )
    record = _plan_record(ws, applied.plan_id)
    mode = record.body.get("mode", "") if record is not None else ""
    result = ApplyResult(applied.plan_id, lc.name, mode, applied.version, applied.physical_name)
    result.already_applied, result.repairs = True, rec.messages()
    target = result.live = ws.store.resolve(lc.name)  # the alias says what is live, whatever the state says
    live = next((v for v in versions if v.physical_name == target), None)
    was = "" if applied.status == "live" else f" (v{applied.version} went live, and is {applied.status} now)"
    now = f"v{live.version} ({target}) is live" if live else f"{lc.name} points at {target or 'nothing'}"
    result.message = f"nothing to resume: plan {applied.plan_id[:12]} is already applied{was}; {now}"
    return result


def apply_from(
    ws: Workspace,
    plan: Plan | str | Path | None = None,
    *,
    resume: str | None = None,
    reports: ReportFiles | None = None,
    **options: Any,
) -> ApplyResult:
    """`reindex apply`: ``plan`` (a Plan or a plan file), or the interrupted apply of ``resume``, then its reports.

    ``options`` are apply's. ``reports`` are written from the gate's evaluation, also
    when the gate refused (the GateRefusedError carries the result); the result's
    ``report_notice`` says why, when none could be.
    """
    from reindexer.evaluation.gate import Gate, check_correction
    from reindexer.planner import load_plan_file
    from reindexer.reports import ReportFiles, write_apply_reports

    options["correction"] = check_correction(options.get("correction", "holm"))  # a typo fails before any work
    if options.get("gate"):
        Gate.parse(options["gate"], options["correction"])  # so does a gate that does not parse
    if (plan is None) == (resume is None):
        raise UsageError("pass a plan file, or --resume COLLECTION")
    if plan is None:  # --resume
        lc = _collection(ws, str(resume))
        plan = _unfinished_plan(ws, lc)
        if plan is None:  # nothing interrupted: a finished apply is success; exit 3 only if none ever finished
            done = _finished_apply(ws, lc)
            done.report_notice = write_apply_reports(done, reports or ReportFiles())
            return done
    elif not isinstance(plan, Plan):
        plan = load_plan_file(plan)
    try:
        result = apply(ws, plan, **options)
    except GateRefusedError as exc:
        if exc.result is not None:
            exc.result.report_notice = write_apply_reports(exc.result, reports or ReportFiles())
        raise
    result.report_notice = write_apply_reports(result, reports or ReportFiles())
    return result


def apply(
    ws: Workspace,
    plan: Plan,
    cutover: bool = True,
    confirm: ConfirmFn = _always,
    delete_missing: bool = True,
    judgements: Any = None,
    gate: str | None = None,
    force: bool = False,
    k: int = 10,
    queries: str | Path | None = None,
    qrels: str | Path | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    correction: str = "holm",
    allow_underpowered: bool = False,
) -> ApplyResult:
    """Build the plan's shadow version, catch it up, verify it, gate it and (optionally) cut over.

    With a gate (here or in the plan) and a live version to compare with, the
    shadow is evaluated against the live version on ``judgements`` before the
    cut-over; a failed gate raises GateRefusedError and leaves the shadow built,
    unless ``force``, which is recorded in the audit log. The gate and the
    judged queries (``judgements``, or the ``queries`` and ``qrels`` files)
    default as configured (reindexer.policy).

    ``executor`` ("local" or "ray", default the config's) says where the build's read and
    embed stages run; ``ray_address`` names the Ray cluster (default RAY_ADDRESS, else a local Ray).
    ``correction`` ("holm", "bh" or "none") corrects the gate's significance tests for multiplicity;
    ``allow_underpowered`` passes a "not significantly worse" clause on an under-powered query set
    (inconclusive otherwise; reindexer.evaluation.gate).
    """
    from reindexer.evaluation.gate import check_correction

    correction = check_correction(correction)
    executor = _apply_executor(ws, plan, executor)
    check_recorded(ws, plan)  # a forged or edited plan is refused before the lease is written
    result = ApplyResult(plan.id, plan.collection, plan.mode, None, None)
    if plan.mode == "noop":
        result.message = plan.reason
        return result
    gate_obj, judgements = _gate_and_judgements(
        ws, plan, gate, correction, judgements, queries, qrels, allow_underpowered
    )
    # The lease comes before the store is touched: a second operator learns who holds the
    # collection, not merely that an embedded store is open elsewhere.
    with ws.lease(plan.collection) as lease:
        rec = reconcile(ws, ws.state.get_collection(ws.store_url, plan.collection), "apply")
        result.repairs = rec.messages()
        if cutover:
            _refuse_physical_name(ws, plan.collection)  # found now, not after hours of building
        version = _version_for_plan(ws, plan)
        if version is not None and _applied_before(ws, plan, version, rec, cutover, result):
            return result
        shadow = _open_shadow(ws, plan, version, cutover)
        result.version, result.physical = shadow.version.version, shadow.version.physical_name
        if shadow.version.status in ("building", "built"):
            build = _ShadowBuild(
                ws, shadow, plan, lease, delete_missing, executor, ray_address or ws.config.ray_address
            )
            shadow.version = _build_and_verify(build, result)
        _audit_applied(ws, shadow, plan, result)
        current = live_version(ws, shadow.lc, shadow.lc.name)
        if gate_obj is not None and current is not None and current.id != shadow.version.id:
            shadow.version = _gate(ws, shadow.lc, current, shadow.version, plan, judgements, gate_obj, force, k, result)
        if cutover:
            _confirm_cut_over(ws, shadow, current, plan, lease, confirm, result)
    return result


def _apply_executor(ws: Workspace, plan: Plan, executor: str | None) -> str:
    """Where the plan's build runs ("local" or "ray"), refused before any work where it cannot."""
    from reindexer.raydata import check_executor

    executor = check_executor(executor or ws.config.executor)
    if executor == "ray" and (plan.to_version.get("index_params") or {}).get("lexical"):
        raise UsageError(
            "the Ray executor does not write lexical vectors yet; this plan's version keeps a BM25 index",
            hint="apply it with --executor local, or plan with --lexical none",
        )
    return executor


@dataclass
class _Shadow:
    """The version an apply builds, with its collection, its model and the live version when it was opened."""

    lc: LogicalCollection
    live: IndexVersion | None
    version: IndexVersion
    model: ModelVersion


def _gate_and_judgements(
    ws: Workspace,
    plan: Plan,
    gate: str | None,
    correction: str,
    judgements: Any,
    queries: Any,
    qrels: Any,
    allow_underpowered: bool = False,
) -> tuple[Any, Any]:
    """The gate apply judges by (with its multiplicity ``correction`` and ``allow_underpowered``) and its
    judged queries, as configured; missing ones are refused before any write."""
    from reindexer.evaluation import Gate

    gate_text = policy.apply_gate(ws.config, plan.collection, gate, plan.gate)
    gate_obj = Gate.parse(gate_text, correction, allow_underpowered) if gate_text else None
    if gate_obj is None or not gate_obj.needs_judgements:
        return gate_obj, judgements
    judgements = policy.judgements(ws.config, plan.collection, judgements, queries, qrels)
    if plan.from_version is not None and judgements is None:
        raise UsageError(
            f"the gate {gate_text!r} needs judged queries to compare v{plan.from_version['version']} with the shadow",
            hint="pass --queries FILE --qrels FILE (BEIR layout), or set queries and qrels under "
            f"[collections.{plan.collection}] in reindex.toml, or drop the gate",
        )
    return gate_obj, judgements


def _refuse_physical_name(ws: Workspace, collection: str) -> None:
    if ws.store.collection_exists(collection):
        raise ConflictError(
            f"{collection!r} is a physical collection, so no alias can take its name",
            hint=f"`reindex migrate {collection}` moves it behind an alias first, or apply with --no-cutover",
        )


def _applied_before(
    ws: Workspace, plan: Plan, version: IndexVersion, rec: Any, cutover: bool, result: ApplyResult
) -> bool:
    """Whether an earlier run of the plan left nothing to do (``result`` then says why); a spent plan raises."""
    if version.status in ("building", "built"):
        return False
    result.version, result.physical = version.version, version.physical_name
    done = rec.completed("cutover")
    if version.status == "live" and done is not None and done.version == version.version:
        result.cut_over, result.live = True, version.physical_name
        result.message = f"completed the interrupted cut-over to v{version.version}"
        return True
    if version.status == "live" or not cutover:
        result.live = version.physical_name if version.status == "live" else None
        result.message = f"plan already applied: v{version.version} is {version.status}"
        result.already_applied = True
        return True
    if version.status in ("retired", "dropped"):
        raise _applied_once(ws, plan, version)
    return False


def _open_shadow(ws: Workspace, plan: Plan, version: IndexVersion | None, cutover: bool) -> _Shadow:
    """The plan's version resumed, or (after the plan's checks) recorded as building."""
    if version is not None:
        if cutover:
            _refuse_if_live_moved(ws, plan, version)
        lc, live, model = _resume_context(ws, plan, version)
        return _Shadow(lc, live, version, model)
    lc, live, model = check_plan(ws, plan)
    if live is not None:
        ws.store.check_copyable(live.physical_name)
    version = ws.state.save(
        IndexVersion(
            collection_id=lc.id,
            version=plan.to_version["version"],
            physical_name=plan.to_version["physical"],
            model_fingerprint=model.fingerprint,
            dim=plan.to_version["dim"],
            metric=plan.to_version["metric"],
            index_params=plan.to_version["index_params"],
            status="building",
            plan_id=plan.id,
        )
    )
    return _Shadow(lc, live, version, model)


def _build_and_verify(build: _ShadowBuild, result: ApplyResult) -> IndexVersion:
    """Build (or, for a version left "built", catch up) and verify; a failed verification is audited and raised.

    "built" is a run that stopped before verifying (killed, or verification failed):
    building again only catches up, and nothing cuts over unverified.
    """
    ws, shadow, plan = build.ws, build.shadow, build.plan
    stats, source_ids = build.run()
    result.stats = stats.__dict__
    ws.state.set_status(shadow.version, "built", point_count=ws.store.count(shadow.version.physical_name))
    try:
        report = verify_version(ws, shadow.lc, shadow.version, shadow.model, source_ids)
    finally:
        _close_ids(source_ids)
    result.verification = report.to_dict()
    if not report.ok:
        ws.state.audit(
            "apply", shadow.lc.name, "failed", plan.inputs_fingerprint, plan_id=plan.id, problems=report.problems()
        )
        name, number = shadow.lc.name, shadow.version.version
        require_verified(
            report,
            f"v{number}",
            f"`reindex verify {name} --version {number} --fix` (with the plan's source options) repairs it, "
            f"then `reindex apply --resume {name}` goes on",
        )
    return ws.state.set_status(shadow.version, "verified")


def _audit_applied(ws: Workspace, shadow: _Shadow, plan: Plan, result: ApplyResult) -> None:
    ws.state.audit(
        "apply",
        shadow.lc.name,
        plan_fingerprint=plan.inputs_fingerprint,
        plan_id=plan.id,
        version=shadow.version.version,
        stats=result.stats,
    )


def _confirm_cut_over(
    ws: Workspace,
    shadow: _Shadow,
    current: IndexVersion | None,
    plan: Plan,
    lease: object,
    confirm: ConfirmFn,
    result: ApplyResult,
) -> None:
    lc, version, model = shadow.lc, shadow.version, shadow.model
    if not confirm(f"Point {lc.name} at v{version.version} ({model.label})?"):
        result.message = "cut-over declined; the shadow stays built"
        return
    # What the application wrote while the shadow was verified and gated.
    caught_up = catch_up_from_live(ws, lc, version, current, lease)
    result.stats = {**result.stats, "caught_up": caught_up.embedded + caught_up.deleted}
    swap_alias(ws, lc, version, current, verb="apply", plan_fingerprint=plan.inputs_fingerprint)
    _notify(
        ws,
        "cutover",
        lc.name,
        to=version.physical_name,
        model=model.label,
        previous=current.physical_name if current else None,
        gate=result.gate,
    )
    result.cut_over = True
    result.live = version.physical_name


def _applied_once(ws: Workspace, plan: Plan, version: IndexVersion) -> ConflictError:
    """A plan whose version went live and has since been superseded, rolled back or dropped: never again."""
    lc = _collection(ws, plan.collection)
    name, n = lc.name, version.version
    current = live_version(ws, lc, name)
    since = f" on {iso(version.live_since)}" if version.live_since else ""
    if version.status == "dropped":
        return ConflictError(
            f"plan {plan.id[:12]} was applied once: v{n} went live{since} and has since been dropped; "
            "a plan is applied once and re-applying it never moves the alias",
            hint=f"make a new plan with `reindex plan {name} ...`",
        )
    if current is None:
        how = "retired"
    elif current.version < n:
        how = f"rolled back to v{current.version}"
    else:
        how = f"superseded by v{current.version}"
    return ConflictError(
        f"plan {plan.id[:12]} was applied once: v{n} went live{since} and has since been {how}; "
        "a plan is applied once and re-applying it never moves the alias",
        hint=f"`reindex cutover {name} --to v{n}` points {name} at v{n} again",
    )


def _refuse_if_live_moved(ws: Workspace, plan: Plan, version: IndexVersion) -> None:
    """A plan's unfinished version cuts over only from the live version the plan was made against."""
    lc = _collection(ws, plan.collection)
    current = live_version(ws, lc, lc.name)
    planned = plan.from_version["physical"] if plan.from_version else None
    now = current.physical_name if current else None
    if planned != now:
        raise DriftError(
            f"plan {plan.id[:12]} was made while {lc.name} pointed at {planned or 'nothing'}; it points at {now} "
            f"now, and cutting over to v{version.version} would replace that",
            hint=f"`reindex cutover {lc.name} --to v{version.version}` does it if that is meant; "
            f"`reindex apply PLAN --no-cutover` finishes v{version.version} without moving the alias",
        )


def _gate(ws, lc, current, version, plan, judgements, gate_obj, force, k, result) -> IndexVersion:
    from reindexer import ab

    comparison = traffic = pipelines = None
    if gate_obj.needs_judgements:
        evaluation = ab.run_evaluation(ws, lc, [current, version], judgements, k=k, gate=gate_obj)
        comparison = evaluation.comparisons[ab.label(version)]
        pipelines = partial(evaluation.comparison_for, ab.label(version))
        result.evaluation = ab.summary(evaluation, k)
        result.evaluation_result = evaluation
    if gate_obj.needs_traffic:
        traffic = _traffic_against(ws, lc, version, current)
        result.traffic = traffic.to_dict()
    decision = gate_obj.evaluate(comparison, traffic, pipelines=pipelines)
    result.gate = {
        "gate": str(gate_obj),
        "correction": gate_obj.correction,
        "allow_underpowered": gate_obj.allow_underpowered,
        "passed": decision.passed,
        "verdict": decision.verdict,
        "forced": False,
        "reasons": decision.reasons,
    }
    if decision.passed:
        ws.state.audit("gate", lc.name, "passed", plan.inputs_fingerprint, gate=str(gate_obj), reasons=decision.reasons)
        return ws.state.set_status(version, "evaluated")
    if force:
        result.gate["forced"] = True
        ws.state.audit(
            "gate-forced", lc.name, "forced", plan.inputs_fingerprint, gate=str(gate_obj), reasons=decision.reasons
        )
        return version
    outcome = "inconclusive" if decision.verdict == "inconclusive" else "refused"
    ws.state.audit("gate", lc.name, outcome, plan.inputs_fingerprint, gate=str(gate_obj), reasons=decision.reasons)
    _notify(ws, "gate-refused", lc.name, version=version.physical_name, reasons=decision.reasons)
    raise _gate_refused(decision, version, lc.name, result)


def _gate_refused(decision: Any, version: IndexVersion, collection: str, result: ApplyResult) -> GateRefusedError:
    """The refusal of a failed gate, or of an inconclusive one (too few judged queries to decide), in its own words."""
    kept = f"v{version.version} stays built for inspection (`reindex eval {collection}`); --force overrides, audited"
    if decision.verdict == "inconclusive":
        return GateRefusedError(
            f"the gate could not decide on promoting v{version.version} (inconclusive: the judged queries are too few "
            "to see a change that matters): " + "; ".join(r for r in decision.reasons if r.startswith("INCONCLUSIVE")),
            hint="judge on more queries; or, for a 'not significantly worse' clause, accept the risk with "
            f"--allow-underpowered; {kept}",
            result=result,
        )
    return GateRefusedError(
        f"the gate refused promoting v{version.version}: " + "; ".join(r for r in decision.reasons if "FAIL" in r),
        hint=kept,
        result=result,
    )


def _notify(ws: Workspace, event: str, collection: str, **detail: Any) -> None:
    from reindexer.notify import notify, webhook_url

    notify(webhook_url(ws.config, collection), event, collection, **detail)


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
        traffic = {ab.label(v): _traffic_against(ws, lc, v, chosen[0]) for v in chosen[1:] if gate_obj.needs_traffic}
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
    from reindexer.reports import ReportFiles

    reports = reports or ReportFiles()
    if request.from_traffic:
        return _eval_traffic(ws, collection, request, reports)
    if request.log:
        return _eval_log(ws, collection, request, reports)
    return _eval_judged(ws, collection, request, reports)


def _eval_traffic(ws: Workspace, collection: str, request: EvalRequest, reports: ReportFiles) -> EvalOutcome:
    from reindexer.reports import write_traffic_report

    summary, gate_obj, decision = traffic_report(ws, collection, request.since, request.shadow, request.gate)
    data = summary.to_dict()
    if decision is not None:
        data["gate"] = {"gate": str(gate_obj), **decision.as_dict()}
    write_traffic_report(data, reports)
    return EvalOutcome(data, gate_obj, traffic=summary, traffic_decision=decision)


def _eval_log(ws: Workspace, collection: str, request: EvalRequest, reports: ReportFiles) -> EvalOutcome:
    from reindexer.evaluation import report
    from reindexer.reports import write_unlabelled_reports

    result = compare_versions(ws, collection, str(request.log), request.versions, request.k)
    write_unlabelled_reports(result, reports)
    return EvalOutcome(report.unlabelled_to_dict(result), unlabelled=result)


def _eval_judged(ws: Workspace, collection: str, request: EvalRequest, reports: ReportFiles) -> EvalOutcome:
    from reindexer.evaluation import report
    from reindexer.reports import write_reports

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


def _traffic_against(ws: Workspace, lc: LogicalCollection, shadow: IndexVersion, live: IndexVersion | None):
    """Mirrored traffic of ``shadow`` against ``live`` (every record of the shadow when live is None)."""
    from reindexer.traffic import summarize

    records = ws.state.traffic(ws.store_url, lc.name, shadow=shadow.physical_name)
    if live is not None:
        records = [r for r in records if r.live == live.physical_name]
    return summarize(lc.name, records)


def compare_versions(ws: Workspace, collection: str, log: str, versions: str | None = None, k: int = 10):
    """Label-free comparison from a query log: overlap@k and rank-biased overlap."""
    from reindexer import ab

    ws.require_store()
    lc = _collection(ws, collection)
    reconcile_readonly(ws, lc, "eval")
    return ab.run_unlabelled(ws, ab.resolve_versions(ws, lc, versions, minimum=2), log, k=k)


def _resume_context(ws: Workspace, plan: Plan, version: IndexVersion):
    lc = _collection(ws, plan.collection)
    model = ws.state.model_of(version)
    live = live_version(ws, lc, lc.name)
    return lc, live, model


@dataclass
class _ShadowBuild:
    """One build of a plan's shadow version: the source's passes into it, on the chosen executor."""

    ws: Workspace
    shadow: _Shadow
    plan: Plan
    lease: object
    delete_missing: bool
    executor: str = "local"
    ray_address: str | None = None

    def run(self) -> tuple[SyncStats, IdSet | set[str]]:
        """The build's stats and the ids the source yielded in its last pass; the run records any failure."""
        ws, shadow, plan = self.ws, self.shadow, self.plan
        live = shadow.live
        create_physical(ws, shadow.lc, shadow.version, shadow.model, like=live.physical_name if live else None)
        run = start_run(ws, shadow.version, "copy" if plan.mode == "copy" else "build", plan.id)
        spec = SourceSpec.from_dict(plan.source)
        total = SyncStats()
        try:
            if plan.mode == "copy":
                total.add(self._copy_live(run))
            embedder = self._embedder()
            started = time.perf_counter()
            seen = self._passes(spec, embedder, run, total)
            if live is not None and plan.mode != "copy":
                carry_other_vectors(ws.store, live.physical_name, shadow.version.physical_name, ws.batch_size)
            finish_run(ws, run)
            self._record_rate(embedder, total, time.perf_counter() - started)
        except BaseException as exc:
            finish_run(ws, run, error=f"{type(exc).__name__}: {exc}")
            raise
        return total, seen

    def _copy_live(self, run: Any) -> SyncStats:
        shadow = self.shadow
        if shadow.live is None:  # the drift check before the build compares the live version with the plan's
            raise DriftError(
                f"plan {self.plan.id[:12]} copies the live version of {shadow.lc.name}, which has none now"
            )
        return copy_into(self.ws, shadow.live, shadow.version, shadow.model, run, text_field=shadow.lc.text_field)

    def _embedder(self) -> Any:
        """This process's embedder; on Ray the replicas load the model, so this process only connects."""
        if self.executor == "local":
            return embedder_for(self.shadow.model, device=self.ws.config.device, batch_size=self.ws.embed_batch_size)
        from reindexer.raydata import connect

        connect(self.ray_address)
        return None

    def _passes(self, spec: SourceSpec, embedder: Any, run: Any, total: SyncStats) -> IdSet | set[str]:
        """Documents edited while a pass ran are picked up by the next; stop once one finds none."""
        seen: IdSet | set[str] | None = None
        for attempt in range(MAX_CATCHUP_PASSES + 1):
            _close_ids(seen)
            stats, seen = self._one_pass(
                spec,
                embedder,
                run,
                label="embedding" if attempt == 0 else "catching up",
                total=self.plan.counts.get("source_docs") if attempt == 0 else None,
            )
            total.add(stats)
            if stats.changed == 0:
                break
        assert seen is not None
        return seen

    def _one_pass(
        self, spec: SourceSpec, embedder: Any, run: Any, label: str, total: int | None
    ) -> tuple[SyncStats, IdSet | set[str]]:
        """One sync pass of the source into the shadow: its stats and the ids it saw."""
        ws, shadow = self.ws, self.shadow
        if self.executor == "ray":
            from reindexer.raydata.executor import sync_on_ray

            live_name = shadow.live.physical_name if shadow.live else None
            return sync_on_ray(
                ws, shadow.version, shadow.model, spec, live_name, self.delete_missing, run, self.lease,
                label=label, total=total,
            )  # fmt: skip
        source = _open(ws, spec, shadow.live)
        ids = IdSet()  # the pass's ids, filled by the pipeline (and the source): kept for verification
        try:
            stats = sync_into(
                ws, shadow.version, shadow.model, source, embedder, self.delete_missing, run, self.lease,
                label=label, total=total, seen=ids,
            )  # fmt: skip
        except BaseException:
            ids.close()
            raise
        finally:
            source.close()
        return stats, ids

    def _record_rate(self, embedder: Any, total: SyncStats, seconds: float) -> None:
        """What later plans of this model estimate from (reindexer.estimate); a Ray build's rate is the
        cluster's, not this device's, so it is not recorded as one."""
        if total.embedded and embedder is not None:
            ws = self.ws
            model = self.shadow.model
            record_run(
                ws.state, model.fingerprint, embedder.device, ws.store_url, total.embedded, seconds, total.embed_seconds
            )


def _close_ids(ids: IdSet | set[str] | None) -> None:
    if isinstance(ids, IdSet):
        ids.close()


def _open(ws: Workspace, spec: SourceSpec, live: IndexVersion | None):
    if spec.kind == "payload":
        # The live collection is the source; catch-up passes re-read it as applications write to it.
        return open_source(spec, store=ws.store, collection=live.physical_name if live else None)
    return open_source(spec)


# -- cut-over and rollback ----------------------------------------------------
def cutover(ws: Workspace, collection: str, to: str | None = None, confirm: ConfirmFn = _always) -> dict[str, Any]:
    """Point the alias at a built (or retired) version: ``to``, else the newest built shadow.

    Re-run after a crash between the alias swap and the state write, it completes
    that cut-over (reconcile) and reports it instead of picking another target.
    """
    lc = _collection(ws, collection)
    with ws.lease(collection) as lease:
        rec = reconcile(ws, lc, "cutover")
        repairs = rec.messages()
        current = live_version(ws, lc, collection)
        done = rec.completed("cutover")
        if done is not None and current is not None and (to is None or find_version(ws, lc, to).id == current.id):
            return _unchanged(collection, current, repairs, completed=True, previous=done.detail.get("previous"))
        target = _cutover_target(ws, lc, to, current)
        if current is not None and target.id == current.id:
            return _unchanged(collection, target, repairs)
        if not confirm(f"Point {collection} at v{target.version} ({target.physical_name})?"):
            return _unchanged(collection, current, repairs)
        # What the application wrote into the live version since the target was last synced.
        caught_up = catch_up_from_live(ws, lc, target, current, lease)
        swap_alias(ws, lc, target, current, verb="cutover")
        _notify(ws, "cutover", collection, to=target.physical_name, previous=current.physical_name if current else None)
        return {
            "collection": collection,
            "live": target.physical_name,
            "changed": True,
            "previous": current.physical_name if current else None,
            "caught_up": {"embedded": caught_up.embedded, "deleted": caught_up.deleted},
            "catch_up": caught_up.how,
            "repairs": repairs,
        }


def _unchanged(
    collection: str, live: IndexVersion | None, repairs: list[dict[str, Any]], **detail: Any
) -> dict[str, Any]:
    """A verb's answer when the alias stays where it is (``detail``: what a completed repair reports)."""
    return {
        "collection": collection,
        "live": live.physical_name if live else None,
        "changed": False,
        **detail,
        "repairs": repairs,
    }


def _cutover_target(ws: Workspace, lc: LogicalCollection, to: str | None, current: IndexVersion | None) -> IndexVersion:
    """``to``, else the newest built shadow; refused unless it is built (or retired, to go back to)."""
    if to is not None:
        target = find_version(ws, lc, to)
    else:
        ready = [v for v in ws.state.versions(saved_id(lc)) if v.status in ("built", "verified", "evaluated")]
        if not ready:
            raise _no_shadow(ws, lc, current)
        target = ready[-1]
    if target.status not in CUTOVER_READY and (current is None or target.id != current.id):
        raise ConflictError(
            f"v{target.version} of {lc.name} is not built (status: {target.status})",
            hint="finish it with `reindex apply --resume` or pick another version",
        )
    return target


def _no_shadow(ws: Workspace, lc: LogicalCollection, current: IndexVersion | None) -> NotFoundError:
    """Nothing built to cut over to; name the retired version to go forward (or back) to, if one is kept."""
    name = lc.name
    kept = [
        v
        for v in ws.state.versions(saved_id(lc))
        if v.status == "retired" and ws.store.collection_exists(v.physical_name)
    ]
    forward = [v for v in kept if current is None or v.version > current.version]
    if forward:
        v = forward[-1]
        how = "was rolled back" if current is not None and v.previous_id == current.id else "is retired"
        return NotFoundError(
            f"{name} has no built shadow version to cut over to: the newer v{v.version} {how}",
            hint=f"`reindex cutover {name} --to v{v.version}` goes forward to it again",
        )
    if kept:
        return NotFoundError(
            f"{name} has no built shadow version to cut over to",
            hint=f"`reindex cutover {name} --to v{kept[-1].version}` returns to a retired version; "
            "or build one with `reindex plan` and `reindex apply`",
        )
    return NotFoundError(
        f"{name} has no built shadow version to cut over to", hint="build one with `reindex plan` and `reindex apply`"
    )


def rollback(ws: Workspace, collection: str, confirm: ConfirmFn = _always, catch_up: bool = True) -> dict[str, Any]:
    """Point the collection back at the version live before the current one.

    Documents changed since the cut-over are first re-embedded into that version
    by its own model (read from the current live payloads), so nothing is lost.
    """
    lc = _collection(ws, collection)
    with ws.lease(collection) as lease:
        rec = reconcile(ws, lc, "rollback")
        current = live_version(ws, lc, collection)
        done = rec.completed("rollback")
        if done is not None and current is not None:  # the crash came after the swap: do not roll back twice
            moved = {k: done.detail.get(k, 0) for k in ("re_embedded", "deleted")}
            return _unchanged(
                collection, current, rec.messages(), completed=True, **{"from": done.detail.get("previous")}, **moved
            )
        current, previous = _live_and_previous(ws, collection, current)
        if not confirm(f"Roll {collection} back from v{current.version} to v{previous.version}?"):
            return _unchanged(collection, current, rec.messages())
        stats = CatchUpStats(how="skipped (--no-catch-up)")
        if catch_up:
            stats = catch_up_from_live(ws, lc, previous, current, lease, text_field=lc.text_field)
        moved = {"re_embedded": stats.embedded, "deleted": stats.deleted}
        swap_alias(
            ws, lc, previous, current, set_previous=False, action="rollback",
            audit={"to": previous.physical_name, "previous": current.physical_name, **moved},
        )  # fmt: skip
        _notify(ws, "rollback", collection, to=previous.physical_name, previous=current.physical_name)
        return {
            "collection": collection,
            "live": previous.physical_name,
            "changed": True,
            "from": current.physical_name,
            **moved,
            "catch_up": stats.how,
            "repairs": rec.messages(),
        }


def _live_and_previous(
    ws: Workspace, collection: str, current: IndexVersion | None
) -> tuple[IndexVersion, IndexVersion]:
    """The live version and the one live before it, refused unless the store still holds that one."""
    if current is None or current.previous_id is None:
        raise NotFoundError(f"{collection} has no previous version to roll back to")
    previous = ws.state.get_version(current.previous_id)
    if previous.status == "dropped" or not ws.store.collection_exists(previous.physical_name):
        raise NotFoundError(
            f"the previous version v{previous.version} of {collection} was dropped",
            hint="pick a kept version with `reindex cutover --to`",
        )
    return current, previous


# -- status, history, retention -----------------------------------------------
def _version_row(ws: Workspace, v: IndexVersion) -> dict[str, Any]:
    model = ws.state.get_model(v.model_fingerprint)
    return {
        "version": v.version,
        "physical": v.physical_name,
        "status": v.status,
        "model": model.label if model else v.model_fingerprint[:12],
        "dim": v.dim,
        "metric": v.metric,
        "count": v.point_count,
        "created_at": iso(v.created_at),
        "live_since": iso(v.live_since),
    }


def status(ws: Workspace, collection: str | None = None) -> list[dict[str, Any]]:
    store = ws.require_store()
    managed = ws.state.list_collections(ws.store_url)
    if collection is not None:
        managed = [c for c in managed if c.name == collection]
        if not managed:
            if store.resolve(collection) is not None:
                return [{"collection": collection, "managed": False, "live": store.resolve(collection)}]
            raise NotFoundError(f"unknown collection {collection!r} in {ws.store_url}")
    out = []
    known_physical: set[str] = set()
    for lc in managed:
        # What the store says wins; repairs are recorded when the lease is free, else only shown.
        rec = reconcile_readonly(ws, lc, "status")
        versions = rec.view(ws.state.versions(saved_id(lc)))
        known_physical.update(v.physical_name for v in versions)
        target = store.resolve(lc.name)
        live = next((v for v in versions if v.physical_name == target), None)
        row: dict[str, Any] = {
            "collection": lc.name,
            "managed": True,
            "live": None,
            "shadows": [_version_row(ws, v) for v in versions if v.status in SHADOW_STATUSES],
            "retired": [_version_row(ws, v) for v in versions if v.status == "retired"],
            "repairs": rec.messages(),
        }
        if live is not None:
            row["live"] = _version_row(ws, live)
            row["live"]["count"] = store.count(live.physical_name)
            meta = store.describe(live.physical_name).metadata
            row["live"]["tagged_model"] = meta.get("reindex.model")
        out.append(row)
    if collection is None:
        aliases = store.list_aliases()
        for name in store.list_collections():
            if name not in known_physical and name not in aliases.values():
                out.append({"collection": name, "managed": False, "live": name})
    return out


def history(ws: Workspace, collection: str, limit: int = 50) -> dict[str, Any]:
    ws.require_store()
    lc = _collection(ws, collection)
    reconcile_readonly(ws, lc, "history")
    return {
        "collection": collection,
        "versions": [_version_row(ws, v) for v in ws.state.versions(saved_id(lc))],
        "events": [
            {
                "at": iso(e.at),
                "action": e.action,
                "result": e.result,
                "user": e.user,
                "host": e.host,
                "plan_fingerprint": e.plan_fingerprint,
                "detail": e.detail,
            }
            for e in ws.state.history(collection, limit)
        ],
    }


def gc(ws: Workspace, collection: str, keep: int | None = None, confirm: ConfirmFn = _always) -> dict[str, Any]:
    """Drop retired versions beyond the ``keep`` most recently retired ones (default: as configured)."""
    keep = policy.keep(ws.config, collection, keep)
    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    lc = _collection(ws, collection)
    with ws.lease(collection):
        repairs = reconcile(ws, lc, "gc").messages()
        retired = [v for v in ws.state.versions(saved_id(lc)) if v.status == "retired"]
        retired.sort(key=lambda v: v.retired_at or v.updated_at, reverse=True)
        doomed = retired[keep:]
        aliased = set(ws.store.list_aliases().values())
        doomed = [v for v in doomed if v.physical_name not in aliased]
        if not doomed or not confirm(
            f"Drop {', '.join(v.physical_name for v in doomed)} of {collection}? This cannot be undone."
        ):
            return {
                "collection": collection,
                "dropped": [],
                "kept": [v.physical_name for v in retired[:keep]],
                "repairs": repairs,
            }
        for v in doomed:
            if ws.store.collection_exists(v.physical_name):
                ws.store.drop_collection(v.physical_name)
            kill_point("gc-after-drop")  # the next command sees the collection gone and records the drop
            ws.state.transition({saved_id(v): {"status": "dropped"}}, drop_ledgers=[saved_id(v)])
        dropped = [v.physical_name for v in doomed]
        ws.state.audit("gc", collection, dropped=dropped, keep=keep)
        return {
            "collection": collection,
            "dropped": dropped,
            "kept": [v.physical_name for v in retired[:keep]],
            "repairs": repairs,
        }


# -- adopt --------------------------------------------------------------------
def adopt(
    ws: Workspace,
    collection: str,
    model_path: str,
    settings: ModelSettings | None = None,
    text_field: str | None = None,
    sample: int = 32,
    min_cosine: float | None = None,
    name: str | None = None,
    seed: int = 0,
    vector_name: str | None = None,
) -> dict[str, Any]:
    """Tag a collection made outside the tool with the model that made it, after checking a sample.

    All or nothing: every check runs before the first write; the store is written
    next (the tags, then the collection's metadata; a failure there takes the tags
    back off), and the state last, in one transaction. A crash between the two
    leaves tags and metadata without records, which running adopt again completes.

    ``vector_name`` (default: ``[collections.NAME] vector_name``) names the dense vector
    the model made, in a collection with several; the metadata records it, and every
    later version re-embeds, verifies and searches that one.
    """
    text_field = text_field or policy.configured_text_field(ws.config, collection) or policy.DEFAULT_TEXT_FIELD
    vector_name = policy.vector_name(ws.config, collection, vector_name)
    store = ws.store
    physical = store.resolve(collection)
    if physical is None:
        raise NotFoundError(f"unknown collection {collection!r} in {ws.store_url}")
    _refuse_if_managed(ws, collection, physical)
    if vector_name is None:
        return _adopt(ws, collection, physical, model_path, settings, text_field, sample, min_cosine, name, seed)
    store.use_vector(physical, vector_name)  # a name the collection lacks is refused here, listing its vectors
    try:
        return _adopt(ws, collection, physical, model_path, settings, text_field, sample, min_cosine, name, seed)
    except BaseException:
        store.use_vector(physical, None)  # the store's metadata still says what it said
        raise


def _adopt(
    ws: Workspace,
    collection: str,
    physical: str,
    model_path: str,
    settings: ModelSettings | None,
    text_field: str,
    sample: int,
    min_cosine: float | None,
    name: str | None,
    seed: int,
) -> dict[str, Any]:
    store = ws.store
    info = store.describe(physical)
    model = _model_matching(ws, collection, info, model_path, name, settings)
    if min_cosine is None:
        min_cosine = reembed_min_cosine(ModelSettings.from_dict(model.settings))
    # A seeded reservoir over one pass: the sample without holding every id of the collection.
    reservoir = Reservoir(sample, seed)
    for page in store.scroll(physical, batch_size=ws.batch_size):
        for p in page:
            reservoir.offer(p.doc_id)
    if not reservoir.met:
        raise UsageError(f"{collection} is empty: there is nothing to compare the model against")
    cos = _sample_cosines(ws, physical, model, reservoir.chosen, text_field, min_cosine)
    with ws.lease(collection):
        _refuse_if_managed(ws, collection, physical)  # another adopt may have finished meanwhile
        lc = ws.state.get_collection(ws.store_url, collection) or LogicalCollection(
            store_url=ws.store_url, name=collection, text_field=text_field
        )
        version = _adopted_version(lc, collection, physical, model, info, reservoir.met)
        per_point = store.holds_point_tags(physical)
        rows, tagged = _tag_points(ws, physical, model, text_field, per_point)
        _write_metadata_or_untag(ws, physical, tagged, _adopted_metadata(lc, version, model, text_field, info))
        kill_point("adopt-before-record")
        found = {
            "model": model.label,
            "physical": physical,
            "sample": len(cos),
            "min_cosine": float(cos.min()),
            "tagged": len(tagged),
            "tag": "point" if per_point else "collection",
            "vector": info.vector,
        }
        version = ws.state.record_adoption(ws.store_url, collection, text_field, model, version, rows, found)
        return {
            "collection": collection,
            "physical": physical,
            "model": model.label,
            "version": version.version,
            "sample": len(cos),
            "min_cosine": round(float(cos.min()), 5),
            "points_tagged": len(tagged),
            "tag": found["tag"],
            "vector": info.vector,
        }


def _model_matching(
    ws: Workspace, collection: str, info: Any, model_path: str, name: str | None, settings: ModelSettings | None
) -> ModelVersion:
    """The model at ``model_path`` (not registered yet), refused unless it makes the collection's dimension."""
    model = describe_model(ws.state, model_path, name=name, settings=settings)
    if info.dim != model.dim:
        raise VerificationError(
            f"{collection} holds {info.dim}-dimensional vectors but {model.label} makes {model.dim}",
            hint="adopt it with the model that made it",
        )
    return model


def _adopted_version(
    lc: LogicalCollection, collection: str, physical: str, model: ModelVersion, info: Any, count: int
) -> IndexVersion:
    """The live version the adopted collection becomes (saved with the adoption's other records)."""
    return IndexVersion(
        collection_id=lc.id or 0,
        version=_version_number_of(physical, collection),
        physical_name=physical,
        model_fingerprint=model.fingerprint,
        dim=info.dim,
        metric=info.metric,
        index_params=info.index_params,
        status="live",
        live_since=utcnow(),
        point_count=count,
    )


def _adopted_metadata(
    lc: LogicalCollection, version: IndexVersion, model: ModelVersion, text_field: str, info: Any
) -> dict[str, Any]:
    metadata = version_metadata(lc, version, model, text_field)
    if info.vector:
        metadata[META_VECTOR] = info.vector
    return metadata


def _write_metadata_or_untag(ws: Workspace, physical: str, tagged: list[tuple[str, Any]], metadata: dict) -> None:
    """The collection's metadata; a failure takes the points' new tags back off before it is raised."""
    try:
        ws.store.set_metadata(physical, metadata)
    except BaseException:
        _untag_points(ws, physical, tagged)
        raise


def _refuse_if_managed(ws: Workspace, collection: str, physical: str) -> None:
    lc = ws.state.get_collection(ws.store_url, collection)
    if lc is not None and ws.state.version_by_physical(saved_id(lc), physical) is not None:
        raise ConflictError(
            f"{collection} is already managed by reindexer",
            hint=f"see `reindex status {collection}`; `reindex forget {collection}` drops the tool's records of it",
        )


def _sample_cosines(
    ws: Workspace,
    physical: str,
    model: ModelVersion,
    chosen: list[str],
    text_field: str,
    min_cosine: float,
) -> np.ndarray:
    """Re-embed the chosen points' stored texts; refuse unless each matches its stored vector."""
    points = ws.store.retrieve(physical, chosen, with_vectors=True)
    texts, vectors, missing = [], [], []
    for p in points:
        text = extract_text(p.payload, text_field)
        if text is None:
            missing.append(p.doc_id)
            continue
        texts.append(text)
        vectors.append(p.vector)
    if missing:
        raise UsageError(
            f"{len(missing)} of {len(points)} sampled points have no text under {text_field!r} "
            f"(e.g. {', '.join(missing[:3])})",
            hint="pass --text-field with the payload path that holds the text, e.g. page_content",
        )
    fresh = embedder_for(model, device=ws.config.device, batch_size=ws.embed_batch_size).embed_documents(texts)
    cos = cosine_rows(np.asarray(vectors), fresh)
    bad = int((cos < min_cosine).sum())
    if bad:
        raise VerificationError(
            f"{bad} of {len(cos)} sampled vectors of {physical} do not match {model.label} "
            f"(cosine min {cos.min():.3f}, needs {min_cosine}): it was made by another model, or by several",
            hint="adopt it with the model that made it; a mixed collection needs a full re-index from its text",
        )
    return cos


def _version_number_of(physical: str, collection: str) -> int:
    prefix = f"{collection}__v"
    if physical.startswith(prefix) and physical[len(prefix) :].isdigit():
        return int(physical[len(prefix) :])
    return 1


def _tag_points(
    ws: Workspace, physical: str, model: ModelVersion, text_field: str, per_point: bool
) -> tuple[list[tuple[str, str]], list[tuple[str, Any]]]:
    """Ledger rows for every stored point, and (doc id, earlier tag) of each point tagged here.

    A failure part-way takes the tags written so far back off before it is raised.
    """
    rows: list[tuple[str, str]] = []
    tagged: list[tuple[str, Any]] = []
    try:
        for page in ws.store.scroll(physical, batch_size=ws.batch_size, with_vectors=per_point):
            todo = []
            for p in page:
                payload = {k: v for k, v in p.payload.items() if k not in (MODEL_KEY, DOC_ID_KEY)}
                text = extract_text(payload, text_field)
                if text is not None:  # the same hash PayloadSource computes, so the first sync skips it
                    rows.append((p.doc_id, content_hash(text, payload)))
                if per_point and p.payload.get(MODEL_KEY) != model.short:
                    todo.append(p)
            if todo:
                before = [(p.doc_id, p.payload.get(MODEL_KEY)) for p in todo]
                ws.store.set_payload_key(physical, todo, MODEL_KEY, model.short)
                tagged.extend(before)
    except BaseException:
        _untag_points(ws, physical, tagged)
        raise
    return rows, tagged


def _untag_points(ws: Workspace, physical: str, tagged: list[tuple[str, Any]]) -> None:
    """Put back the tag each point had before adopt (none, mostly)."""
    by_tag: dict[Any, list[str]] = {}
    for doc_id, tag in tagged:
        by_tag.setdefault(tag, []).append(doc_id)
    for tag, doc_ids in by_tag.items():
        for i in range(0, len(doc_ids), ws.batch_size):
            points = ws.store.retrieve(physical, doc_ids[i : i + ws.batch_size], with_vectors=True)
            ws.store.set_payload_key(physical, points, MODEL_KEY, tag)


# -- forget -------------------------------------------------------------------
def forget(ws: Workspace, collection: str, confirm: ConfirmFn = _always) -> dict[str, Any]:
    """Remove the tool's records of a collection (versions, ledgers, plans); the store is not touched.

    For a collection adopted by mistake, or one whose records no longer match its
    store. Its collections, aliases, points and tags stay as they are; adopt can
    take it on again.
    """
    lc = _collection(ws, collection)
    versions = ws.state.versions(saved_id(lc))
    names = [v.physical_name for v in versions]
    if not confirm(
        f"Forget {collection} ({len(names)} version(s): {', '.join(names) or 'none'})? reindexer drops its "
        "records of it; the store keeps every collection, alias and point as it is."
    ):
        return {"collection": collection, "forgotten": False, "versions": names}
    with ws.lease(collection):
        ws.state.forget_collection(saved_id(lc), pending_key(ws.store_url, collection), {"versions": names})
    in_store = set(ws.store.list_collections())
    return {
        "collection": collection,
        "forgotten": True,
        "versions": names,
        "left_in_store": [n for n in names if n in in_store],
    }


# -- migrate ------------------------------------------------------------------
def migrate(ws: Workspace, collection: str, confirm: ConfirmFn = _always) -> dict[str, Any]:
    """Move a collection that applications query by its real name behind an alias of that name.

    No alias can take the name of an existing collection, so: copy it (vectors,
    no re-embedding) into ``NAME__vN``, verify the copy, drop the original and
    create the alias. Between the drop and the alias the name resolves to
    nothing; the result reports how long that gap lasted.
    """
    lc = _collection(ws, collection)
    with ws.lease(collection) as lease:
        rec = reconcile(ws, lc, "migrate")  # a migrate killed between the drop and the alias is finished here
        done = rec.completed("migrate")
        if done is not None:
            return _completed_migration(ws, lc, done, rec.messages())
        source, model = _migration_source(ws, lc)
        target, copied = _copy_original(ws, lc, source, model)
        ws.renew(lease)
        target, count = _verify_copy(ws, lc, target, model)
        if not confirm(f"Drop collection {collection} and replace it by an alias to {target.physical_name}?"):
            return {"collection": collection, "copied_to": target.physical_name, "migrated": False}
        gap_ms = _replace_by_alias(ws, lc, source, target, copied)
        kill_point("migrate-after-alias")
        _record_migration(ws, lc, source, target, copied, gap_ms, count)
        return {
            "collection": collection,
            "copied_to": target.physical_name,
            "migrated": True,
            "copied": copied,
            "name_missing_ms": round(gap_ms, 1),
        }


def _completed_migration(ws: Workspace, lc: LogicalCollection, done: Any, repairs: list[dict[str, Any]]) -> dict:
    target = find_version(ws, lc, str(done.version))
    return {
        "collection": lc.name,
        "copied_to": target.physical_name,
        "migrated": True,
        "completed": True,
        "copied": done.detail.get("copied"),
        "name_missing_ms": done.detail.get("gap_ms"),
        "repairs": repairs,
    }


def _migration_source(ws: Workspace, lc: LogicalCollection) -> tuple[IndexVersion, ModelVersion]:
    """The adopted version that is the collection itself, and its model; refused unless it can be copied."""
    collection = lc.name
    if not ws.store.collection_exists(collection):
        raise ConflictError(f"{collection} is already an alias (or missing): nothing to migrate")
    source = ws.state.version_by_physical(saved_id(lc), collection)
    if source is None:
        raise ConflictError(f"{collection} is not adopted", hint=f"`reindex adopt {collection} --model PATH` first")
    ws.store.check_copyable(collection)
    return source, ws.state.model_of(source)


def _copy_original(
    ws: Workspace, lc: LogicalCollection, source: IndexVersion, model: ModelVersion
) -> tuple[IndexVersion, int]:
    """A new version ``NAME__vN`` holding a copy of the collection's points (vectors, no re-embedding)."""
    number = max(ws.state.next_version_number(saved_id(lc)), source.version + 1)
    target = ws.state.save(
        IndexVersion(
            collection_id=lc.id,
            version=number,
            physical_name=physical_name(lc.name, number),
            model_fingerprint=model.fingerprint,
            dim=source.dim,
            metric=source.metric,
            index_params=source.index_params,
            status="building",
        )
    )
    create_physical(ws, lc, target, model, like=lc.name)
    run = start_run(ws, target, "copy")
    stats = copy_into(ws, source, target, model, run, text_field=lc.text_field)
    # Writes that landed in the original during the copy: copy again until nothing is new.
    stats.add(copy_into(ws, source, target, model, run, text_field=lc.text_field))
    finish_run(ws, run)
    return target, stats.copied


def _verify_copy(
    ws: Workspace, lc: LogicalCollection, target: IndexVersion, model: ModelVersion
) -> tuple[IndexVersion, int]:
    """The copy checked against the original's ids and recorded verified; with its point count."""
    original_ids = {p.doc_id for page in ws.store.scroll(lc.name, batch_size=ws.batch_size) for p in page}
    report = verify_version(ws, lc, target, model, original_ids)
    require_verified(
        report,
        f"the copy {target.physical_name}",
        f"`reindex verify {lc.name} --version {target.version} --fix` repairs it",
    )
    return ws.state.set_status(target, "verified", point_count=report.store_count), report.store_count


def _replace_by_alias(
    ws: Workspace, lc: LogicalCollection, source: IndexVersion, target: IndexVersion, copied: int
) -> float:
    """Drop the original and point an alias of its name at the copy; how long the name resolved to nothing (ms)."""
    ws.store.advance_generated_ids(target.physical_name)  # before applications insert into the copy
    # Recorded before the drop: whatever command comes after a crash in the gap makes the alias.
    ws.state.set_pending(
        pending_key(ws.store_url, lc.name),
        new_intent("migrate", "migrate", target, source, False, {"to": target.physical_name, "copied": copied}),
    )
    started = time.perf_counter()
    ws.store.drop_collection(lc.name)
    kill_point("migrate-after-drop")
    ws.store.set_alias(lc.name, target.physical_name)
    return (time.perf_counter() - started) * 1000


def _record_migration(
    ws: Workspace,
    lc: LogicalCollection,
    source: IndexVersion,
    target: IndexVersion,
    copied: int,
    gap_ms: float,
    count: int,
) -> None:
    """The copy live, the original recorded dropped, the audit entry and the intent cleared: one transaction."""
    changes, drops = liveness_changes(
        ws.state.versions(saved_id(lc)), target, source, "migrate", False, count, utcnow()
    )
    detail = {"to": target.physical_name, "copied": copied, "gap_ms": round(gap_ms, 1)}
    ws.state.transition(
        changes, [("migrate", lc.name, "ok", None, detail)], drops, clear_pending=pending_key(ws.store_url, lc.name)
    )


def upgrade_state(state: str | None = None, cwd: Any = None) -> Any:
    """`reindex state upgrade`: the configured (or given) state database to this release's schema revision."""
    from reindexer.config import load_config
    from reindexer.state import StateStore

    config = load_config(state_url=state, cwd=cwd)
    return StateStore.upgrade(config.state_url, config.base_dir)
