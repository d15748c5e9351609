"""How a gate judges its clauses over mirrored live traffic (``traffic overlap@10 >= 0.6``, ...).

The clause itself (its measure, bound and level) is reindexer.evaluation.gate_clauses.TrafficClause; the
traffic it reads is a reindexer.traffic.TrafficSummary, whose always-valid sequential test decides every
clause but ``traffic queries``. Judged clauses (over judged queries) are reindexer.evaluation.gate's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from reindexer.evaluation.gate_clauses import OPS, TrafficClause


def judge_traffic(clause: TrafficClause, traffic: Any) -> tuple[bool, str, Any]:
    """(holds, reason, the always-valid test or None): ``traffic queries`` by its count; every other
    clause by the always-valid sequential test at its level (``DEFAULT_TRAFFIC_LEVEL`` when it names
    none), so looking again as traffic accumulates never raises the chance of a false pass."""
    if traffic is None or traffic.queries == 0:
        why = "no mirrored queries for this shadow (run the Searcher or `reindex serve` with shadow_sample)"
        return False, why, None
    if clause.measure == "queries":
        value = clause.measured(traffic)
        ok = OPS[clause.op](value, clause.value)
        return ok, f"{value:.0f} {'meets' if ok else 'misses'} {clause.op} {clause.value:g}", None
    test = traffic.sequential(clause.measure, clause.op, clause.value, clause.level)
    shown = "share slower than " + f"{clause.value:g}x live" if clause.is_latency else clause.measure
    bound = f"{'lower' if test.side == 'above' else 'upper'} {1 - test.alpha:.0%} bound {test.bound:.4f}"
    ok = clause.p_holds(test.p_value)
    met = f"{test.estimate:.4f} ({shown}), always-valid p = {test.p_value:.4g}"
    return ok, (
        f"{met} {'<' if ok else '>='} {clause.level:g}, {bound}, over {test.n} mirrored queries "
        f"[{test.method}]"
    ), replace(test, alpha=clause.level)  # fmt: skip
