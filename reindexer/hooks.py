"""Deployment hooks: one call after training, and a SentenceTransformerTrainer callback.

    trainer.train()
    result = reindexer.deploy("out/model", "docs", store="milvus+lite:vectors.db",
                              gate="ndcg@10 >= 0 and not significantly worse at p < 0.05",
                              queries="eval/queries.jsonl", qrels="eval/qrels.tsv")
    if not result.promoted: ...

``deploy`` registers the model (with its training facts), plans, builds and
verifies the shadow, evaluates it against the live version when a gate is
given or configured, and cuts over when the gate passes. What is not given
(source, gate, queries and qrels) defaults from reindex.toml and REINDEX_*
exactly as for `reindex plan` and `reindex apply` (reindexer.policy). A refused gate is an answer, not an
exception: ``result.decision == "refused"`` and the shadow stays built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reindexer import commands
from reindexer.errors import GateRefusedError
from reindexer.extras import require_train
from reindexer.model_identity import ModelSettings
from reindexer.planner import Plan
from reindexer.report_files import ReportFiles
from reindexer.sources.spec import SourceSpec
from reindexer.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class DeployResult:
    collection: str
    model: str
    plan: Plan
    decision: str  # promoted | built | refused | unchanged
    apply: commands.ApplyResult | None = None
    evaluation: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "model": self.model,
            "plan_id": self.plan.id,
            "mode": self.plan.mode,
            "decision": self.decision,
            "evaluation": self.evaluation,
            "gate": self.gate,
            "message": self.message,
            "live": self.apply.live if self.apply else None,
        }


def deploy(
    model_path: str | Path,
    collection: str,
    *,
    store: str | None = None,
    state: str | None = None,
    workspace: Workspace | None = None,
    source: SourceSpec | str | None = None,
    gate: str | None = None,
    queries: str | Path | None = None,
    qrels: str | Path | None = None,
    cutover: bool = True,
    force: bool = False,
    name: str | None = None,
    settings: ModelSettings | None = None,
    base_model: str | None = None,
    train_data: str | None = None,
    run_id: str | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
    vector_name: str | None = None,
    reports: ReportFiles | None = None,
) -> DeployResult:
    """Put the model at ``model_path`` behind ``collection``, gated when ``gate`` is given.

    ``vector_name`` is checked against the dense vector the collection was adopted with
    (``reindex plan --vector-name``): the one a collection with several re-embeds.
    ``reports`` (reindexer.report_files.ReportFiles) are the gate evaluation's report files,
    written as `reindex apply --report-json/--report-md/--report-html` writes them.
    """
    ws = workspace or Workspace.open(store=store, state=state)
    try:
        from reindexer.raydata import check_executor

        check_executor(executor or ws.config.executor)  # before the model is registered: nothing written yet
        # planning checks every input before it registers the model or writes anything else
        plan = commands.plan(
            ws,
            collection,
            model_path=str(model_path),
            settings=settings,
            model_name=name,
            training={"base_model": base_model, "train_data": train_data, "run_id": run_id},
            source=source,
            gate=gate,
            vector_name=vector_name,
        )
        result = DeployResult(collection, plan.to_version["model"], plan, "unchanged")
        if plan.mode == "noop":
            result.message = plan.reason
            return result
        applied: commands.ApplyResult | None
        try:
            applied = commands.apply_from(
                ws,
                plan,
                reports=reports,
                cutover=cutover,
                queries=queries,
                qrels=qrels,
                force=force,
                executor=executor,
                ray_address=ray_address,
            )
        except GateRefusedError as exc:
            applied = exc.result
            result.apply, result.decision, result.message = applied, "refused", str(exc)
            if applied is not None:
                result.evaluation, result.gate = applied.evaluation, applied.gate
            return result
        result.apply, result.evaluation, result.gate = applied, applied.evaluation, applied.gate
        result.decision = "promoted" if applied.cut_over else "built"
        result.message = applied.message
        return result
    finally:
        if workspace is None:
            ws.close()


def _transformers_callback_base():
    try:
        from transformers import TrainerCallback
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        return object
    return TrainerCallback


if TYPE_CHECKING:
    from transformers import TrainerCallback as _CallbackBase
else:
    _CallbackBase = _transformers_callback_base()


class ReindexCallback(_CallbackBase):
    """When training ends: save the model, register it, plan, and apply with the gate.

        trainer = SentenceTransformerTrainer(..., callbacks=[ReindexCallback("docs", store=..., gate=...)])
        trainer.train()
        callback.result.promoted

    Only the main process (``state.is_world_process_zero``) deploys.
    """

    def __init__(self, collection: str, *, save_to: str | Path | None = None, **deploy_options: Any):
        # checked here, not when training ends: a missing extra must not cost a training run
        require_train("ReindexCallback (sentence-transformers' trainer)")
        self.collection = collection
        self.save_to = Path(save_to) if save_to else None
        self.deploy_options = deploy_options
        self.result: DeployResult | None = None

    def on_train_end(self, args, state, control, model=None, **kwargs):  # noqa: D401 - transformers' signature
        if not getattr(state, "is_world_process_zero", True):
            return control
        if model is None:
            raise ValueError("ReindexCallback needs the trained model; use it with SentenceTransformerTrainer")
        target = self.save_to or Path(args.output_dir) / "reindex-final"
        model.save(str(target))
        options = dict(self.deploy_options)
        options.setdefault("run_id", getattr(args, "run_name", None))
        options.setdefault(
            "base_model", getattr(model, "model_card_data", None) and getattr(model.model_card_data, "base_model", None)
        )
        self.result = deploy(target, self.collection, **options)
        log.info("reindex %s: %s", self.collection, self.result.decision)
        return control
