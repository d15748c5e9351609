"""What a gate decides about one candidate: its verdict, one reason per clause, and the tests it read.

The data of a decision and its JSON form (``as_dict``, part of the evaluation report's schema); the
judging that produces it is reindexer.evaluation.gate's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class SignificanceVerdict:
    """One significance test as one clause read it: the raw and the adjusted p-value, and the verdict."""

    clause: str
    metric: str
    pipeline: str
    """The candidate's pipeline."""
    versus: str
    """The baseline's pipeline."""
    delta: float
    p_value: float
    """The paired randomisation test's p-value, as computed."""
    p_adjusted: float
    """After the gate's multiplicity correction over its family of tests; what the clause compares."""
    verdict: str
    holds: bool
    mde: float = math.nan
    """The query set's minimum detectable effect at 80% power and the clause's level (NaN: unknown)."""
    margin: float | None = None
    """The smallest drop that matters, as the gate declares it (a power clause's change or a threshold's margin)."""
    underpowered: bool = False
    """``mde`` > ``margin``: a drop that matters would go unseen more than one time in five."""
    inconclusive: bool = False
    """Not significantly worse, but under-powered (and not allowed): neither a pass nor a fail."""

    def as_dict(self) -> dict[str, object]:
        return {
            "clause": self.clause,
            "metric": self.metric,
            "pipeline": self.pipeline,
            "versus": self.versus,
            "delta": _finite(self.delta),
            "p_value": _finite(self.p_value),
            "p_adjusted": _finite(self.p_adjusted),
            "verdict": self.verdict,
            "holds": self.holds,
            "mde": _finite(self.mde),
            "margin": self.margin,
            "underpowered": self.underpowered,
            "inconclusive": self.inconclusive,
        }


VERDICTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    """One line per clause: 'PASS ...', 'FAIL ...' or 'INCONCLUSIVE ...' with the measured value and the threshold."""
    correction: str = "holm"
    """The gate's multiplicity correction (CORRECTIONS)."""
    family_size: int = 0
    """How many significance tests were corrected together (every candidate's of one evaluation)."""
    significance: list[SignificanceVerdict] = field(default_factory=list)
    """Every significance test this candidate's clauses read, in the order of the reasons."""
    verdict: str = ""
    """"pass", "fail" or "inconclusive" (the query set too small to decide; refused like a fail);
    by default "pass" or "fail" as ``passed`` says."""
    traffic: list[Any] = field(default_factory=list)
    """The always-valid test that judged each traffic clause on overlap, RBO or latency
    (reindexer.traffic.SequentialTest), with its method, level, p-value and bound."""

    def __post_init__(self) -> None:
        verdict = self.verdict or ("pass" if self.passed else "fail")
        if verdict not in VERDICTS or self.passed != (verdict == "pass"):
            raise ValueError(f"a decision that {'passed' if self.passed else 'did not pass'} cannot be {verdict!r}")
        object.__setattr__(self, "verdict", verdict)

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "correction": self.correction,
            "family_size": self.family_size,
            "significance": [v.as_dict() for v in self.significance],
            "traffic": [t.as_dict() for t in self.traffic],
        }
