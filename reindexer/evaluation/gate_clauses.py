"""The clauses a gate is made of: what each says, as data (``ndcg@10 >= -0.005`` is a Threshold).

Judged clauses (Threshold, Significance, Power) read a comparison on judged queries; a TrafficClause reads
mirrored live traffic. Their meaning is written in reindexer.evaluation.gate's docstring; reading them from
text is reindexer.evaluation.gate_parser, judging them reindexer.evaluation.gate (and gate_traffic).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float
    pipeline: str | None = None
    """The candidate's pipeline; None: the gate's default (dense)."""
    versus: str | None = None
    """The baseline's pipeline; None: the same as the candidate's."""

    def __str__(self) -> str:
        return f"{_pipelines_prefix(self)}{self.metric} {self.op} {self.value:g}"

    @property
    def pair(self) -> tuple[str | None, str | None]:
        return self.pipeline, self.versus


@dataclass(frozen=True)
class Significance:
    better: bool
    """True: 'significantly better'; False: 'not significantly worse'."""
    alpha: float
    inclusive: bool
    """``p <= alpha`` rather than ``p < alpha``."""
    metric: str | None = None
    """None: every metric named in the gate's thresholds of the same pipelines."""
    pipeline: str | None = None
    versus: str | None = None

    def __str__(self) -> str:
        words = "significantly better" if self.better else "not significantly worse"
        prefix = _pipelines_prefix(self) + (f"{self.metric} " if self.metric else "")
        return f"{prefix}{words} at p {'<=' if self.inclusive else '<'} {self.alpha:g}"

    @property
    def pair(self) -> tuple[str | None, str | None]:
        return self.pipeline, self.versus

    def significant(self, p_value: float) -> bool:
        return p_value <= self.alpha if self.inclusive else p_value < self.alpha


POWER_ALPHA = 0.05
"""The level a power clause uses when it names none and no significance clause reads its metric."""


@dataclass(frozen=True)
class Power:
    """``METRIC power for CHANGE [at p < LEVEL] >= TARGET``: the query set can see a change of that size."""

    metric: str
    effect: float
    """The absolute change of the metric (candidate - baseline) to detect, > 0."""
    op: str
    """">=" or ">"."""
    target: float
    """The power required, in (0, 1)."""
    alpha: float | None = None
    """The two-sided level; None: the gate's significance clause's on the metric, else POWER_ALPHA."""
    inclusive: bool = False
    pipeline: str | None = None
    versus: str | None = None

    def __str__(self) -> str:
        level = "" if self.alpha is None else f" at p {'<=' if self.inclusive else '<'} {self.alpha:g}"
        return f"{_pipelines_prefix(self)}{self.metric} power for {self.effect:g}{level} {self.op} {self.target:g}"

    @property
    def pair(self) -> tuple[str | None, str | None]:
        return self.pipeline, self.versus


DEFAULT_TRAFFIC_LEVEL = 0.05
"""The level of a traffic clause without ``at p < ...``: every overlap, RBO and latency clause is judged
by the always-valid test, since a gate over accumulating traffic is looked at again and again."""


@dataclass(frozen=True)
class TrafficClause:
    """A clause over mirrored live traffic (reindexer.traffic.TrafficSummary)."""

    measure: str  # "overlap@K", "rbo", "queries", or "pNN latency"
    op: str
    value: float
    alpha: float | None = None
    """``... at p < ALPHA``: the level of the always-valid sequential test (reindexer.traffic.always_valid)
    that judges the clause, valid however often the gate is evaluated as traffic accumulates; None:
    ``DEFAULT_TRAFFIC_LEVEL``."""
    inclusive: bool = False

    @property
    def is_latency(self) -> bool:
        return self.measure.endswith("latency")

    @property
    def sequential(self) -> bool:
        """Judged by the always-valid test: every clause but ``traffic queries``."""
        return self.measure != "queries"

    @property
    def level(self) -> float:
        return self.alpha if self.alpha is not None else DEFAULT_TRAFFIC_LEVEL

    def p_holds(self, p_value: float) -> bool:
        return p_value <= self.level if self.inclusive else p_value < self.level

    def __str__(self) -> str:
        level = "" if self.alpha is None else f" at p {'<=' if self.inclusive else '<'} {self.alpha:g}"
        return f"traffic {self.measure} {self.op} {self.value:g}{'x' if self.is_latency else ''}{level}"

    def measured(self, traffic: Any) -> float:
        if self.measure == "queries":
            return float(traffic.queries)
        if self.measure == "rbo":
            return traffic.rbo.mean
        if self.measure.startswith("overlap@"):
            return traffic.overlap_at(int(self.measure.split("@")[1]))
        return traffic.latency_ratio(int(self.measure[1:].split()[0]))


Judged = Threshold | Significance | Power


Clause = Threshold | Significance | Power | TrafficClause


def _pipelines_prefix(clause: Judged) -> str:
    if clause.pipeline is None:
        return ""
    return f"{clause.pipeline} vs {clause.versus} " if clause.versus else f"{clause.pipeline} "
