"""One function per verb. The CLI parses, calls one of these, and prints what it returns.

Every verb takes a Workspace first and returns plain data (dicts, lists or
dataclasses with ``to_dict``), so Python callers get the same behaviour as the CLI.
This package's ``__init__`` is only the index: each verb lives in the module its
job names, and is re-exported here so that ``commands.apply(...)`` reads as before.

=========================  ==========================================================
module                     verbs
=========================  ==========================================================
commands.applying          plan, source_spec, apply, apply_from, latest_unfinished_plan,
                           check_apply_target
                           (ApplyResult: what an apply answers)
commands.liveness          cutover, rollback, gc
commands.adoption          adopt, forget, migrate
commands.evaluating        evaluate, evaluate_versions, calibrate, traffic_report,
                           compare_versions (EvalRequest, EvalOutcome)
commands.syncing           sync, verify (SyncResult, VerifyResult)
commands.inspect           status, history, model_register, model_list, upgrade_state
commands._shared           no verb: what several verb modules share (the confirmation
                           callback, the webhook notice, mirrored traffic)
=========================  ==========================================================

The modules are named for their job, not for a verb (``applying``, not ``apply``), so
that no module hides behind the verb of the same name re-exported here.
How a version is built and kept in sync (the steps the verbs call) is reindexer.build.
"""

from reindexer.commands.adoption import adopt, forget, migrate
from reindexer.commands.applying import (
    ApplyResult,
    apply,
    apply_from,
    check_apply_target,
    latest_unfinished_plan,
    plan,
    source_spec,
)
from reindexer.commands.evaluating import (
    EvalOutcome,
    EvalRequest,
    calibrate,
    compare_versions,
    evaluate,
    evaluate_versions,
    traffic_report,
)
from reindexer.commands.inspect import history, model_list, model_register, status, upgrade_state
from reindexer.commands.liveness import cutover, gc, rollback
from reindexer.commands.syncing import SyncResult, VerifyResult, sync, verify

__all__ = [
    "ApplyResult",
    "EvalOutcome",
    "EvalRequest",
    "SyncResult",
    "VerifyResult",
    "adopt",
    "apply",
    "apply_from",
    "calibrate",
    "check_apply_target",
    "compare_versions",
    "cutover",
    "evaluate",
    "evaluate_versions",
    "forget",
    "gc",
    "history",
    "latest_unfinished_plan",
    "migrate",
    "model_list",
    "model_register",
    "plan",
    "rollback",
    "source_spec",
    "status",
    "sync",
    "traffic_report",
    "upgrade_state",
    "verify",
]
