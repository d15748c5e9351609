"""The verbs that build and promote a version: plan, apply (and apply_from, with --resume), source_spec.

`reindex apply` walks its plan top-down, one named step each: open the shadow (resumed, or
recorded as building), build and verify it (reindexer.build.shadow, reindexer.build.verify),
audit the apply, gate it against the live version (reindexer.evaluation.gate, on judged queries
or mirrored traffic), then confirm and cut over (catch up, swap the alias: reindexer.swap).
ApplyResult is what an apply answers. Moving the alias on its own (cutover, rollback) is
reindexer.commands.liveness; measuring versions without applying is reindexer.commands.evaluating.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reindexer import policy
from reindexer.build.catchup import catch_up_from_live
from reindexer.build.shadow import Shadow, ShadowBuild, close_ids
from reindexer.build.verify import require_verified, verify_version
from reindexer.commands._shared import ConfirmFn, always_confirm, notify_webhook, traffic_against
from reindexer.errors import ConflictError, DriftError, GateRefusedError, NotFoundError, UsageError
from reindexer.lookup import managed_collection as _collection
from reindexer.planner import (
    Plan,
    check_plan,
    check_recorded,
    decide,
    gather_inputs,
    live_version,
    record_plan,
)
from reindexer.reconcile import reconcile, reconcile_readonly
from reindexer.sources.spec import SourceSpec
from reindexer.state import IndexVersion, LogicalCollection
from reindexer.state.models import iso, saved_id
from reindexer.swap import swap_alias
from reindexer.workspace import Workspace

if TYPE_CHECKING:
    from reindexer.evaluation.runner import EvaluationResult
    from reindexer.report_files import ReportFiles


RESUMABLE = ("building", "built", "verified", "evaluated")


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
    #: The ANN index the build made after the load (pgvector): kind, settings, rows, seconds; None elsewhere.
    index_build: dict[str, Any] | None = None
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
    #: Why no report file was written although some were asked for (reindexer.report_files).
    report_notice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from reindexer.evaluation import report
        from reindexer.report_files import report_gate

        data = {k: v for k, v in self.__dict__.items() if k not in ("evaluation_result", "report_notice")}
        if self.evaluation_result is not None:
            data["report"] = report.to_dict(self.evaluation_result, report_gate(self.gate))
        return data


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
            record = ws.state.get_plan(v.plan_id)
            if record is None:
                raise NotFoundError(f"v{v.version} was built by plan {v.plan_id[:12]}, which the state no longer holds")
            return Plan.from_dict(record.body)
    return None


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
    record = ws.state.get_plan(applied.plan_id)
    mode = record.body.get("mode", "") if record is not None else ""
    result = ApplyResult(applied.plan_id, lc.name, mode, applied.version, applied.physical_name)
    result.already_applied, result.repairs = True, rec.messages()
    target = result.live = ws.store.resolve(lc.name)  # the alias says what is live, whatever the state says
    live = next((v for v in versions if v.physical_name == target), None)
    was = "" if applied.status == "live" else f" (v{applied.version} went live, and is {applied.status} now)"
    now = f"v{live.version} ({target}) is live" if live else f"{lc.name} points at {target or 'nothing'}"
    result.message = f"nothing to resume: plan {applied.plan_id[:12]} is already applied{was}; {now}"
    return result


def check_apply_target(plan: object, resume: str | None) -> None:
    """Exactly one of a plan (or plan file) and ``--resume COLLECTION``.

    apply_from asks first; the CLI asks too, before its own checks, so a bad command line gets this answer first.
    """
    if (plan is None) == (resume is None):
        raise UsageError("pass a plan file, or --resume COLLECTION")


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
    from reindexer.report_files import ReportFiles, write_apply_reports

    options["correction"] = check_correction(options.get("correction", "holm"))  # a typo fails before any work
    if options.get("gate"):
        Gate.parse(options["gate"], options["correction"])  # so does a gate that does not parse
    check_apply_target(plan, resume)
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
    confirm: ConfirmFn = always_confirm,
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
    full_verify: bool = False,
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
    (inconclusive otherwise; reindexer.evaluation.gate). The verification checks counts and a
    random sample of points, or every point with ``full_verify`` (reindexer.build.verify).
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
        version = ws.state.version_of_plan(plan.id)
        if version is not None and _applied_before(ws, plan, version, rec, cutover, result):
            return result
        shadow = _open_shadow(ws, plan, version, cutover)
        result.version, result.physical = shadow.version.version, shadow.version.physical_name
        if shadow.version.status in ("building", "built"):
            build = ShadowBuild(ws, shadow, plan, lease, delete_missing, executor, ray_address or ws.config.ray_address)
            shadow.version = _build_and_verify(build, result, full_verify)
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


def _open_shadow(ws: Workspace, plan: Plan, version: IndexVersion | None, cutover: bool) -> Shadow:
    """The plan's version resumed, or (after the plan's checks) recorded as building."""
    if version is not None:
        if cutover:
            _refuse_if_live_moved(ws, plan, version)
        lc, live, model = _resume_context(ws, plan, version)
        return Shadow(lc, live, version, model)
    lc, live, model = check_plan(ws, plan)
    if live is not None:
        ws.store.check_copyable(live.physical_name, plan.to_version["dim"])
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
    return Shadow(lc, live, version, model)


def _build_and_verify(build: ShadowBuild, result: ApplyResult, full: bool = False) -> IndexVersion:
    """Build (or, for a version left "built", catch up) and verify; a failed verification is audited and raised.

    "built" is a run that stopped before verifying (killed, or verification failed):
    building again only catches up, and nothing cuts over unverified.
    """
    ws, shadow, plan = build.ws, build.shadow, build.plan
    stats, source_ids = build.run()
    result.stats = stats.__dict__
    result.index_build = build.index_build
    ws.state.set_status(shadow.version, "built", point_count=ws.store.count(shadow.version.physical_name))
    try:
        report = verify_version(ws, shadow.lc, shadow.version, shadow.model, source_ids, full=full)
    finally:
        close_ids(source_ids)
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


def _audit_applied(ws: Workspace, shadow: Shadow, plan: Plan, result: ApplyResult) -> None:
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
    shadow: Shadow,
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
    notify_webhook(
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
        traffic = traffic_against(ws, lc, version, current)
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
    notify_webhook(ws, "gate-refused", lc.name, version=version.physical_name, reasons=decision.reasons)
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


def _resume_context(ws: Workspace, plan: Plan, version: IndexVersion):
    lc = _collection(ws, plan.collection)
    model = ws.state.model_of(version)
    live = live_version(ws, lc, lc.name)
    return lc, live, model
