"""The promotion gate: a small expression over a candidate-vs-baseline comparison.

Every number is an allowed *delta*, candidate minus baseline, never an
absolute score: a gate should survive a change of query set, absolute
scores do not.

Grammar (keywords and metric names are case-insensitive)::

    gate         := clause ("and" clause)*
    clause       := [PIPELINE ["vs" PIPELINE]] (threshold | significance | power) | traffic
    PIPELINE     := "dense" | "hybrid" | "dense+rerank" | "hybrid+rerank"
                  | "lexical" (lexical only after "vs")
    threshold    := METRIC OP NUMBER
    traffic      := "traffic" ( "overlap@" K | "rbo" ) OP NUMBER [level]
                  | "traffic" "p" PCT "latency" OP NUMBER "x" [level]
                  | "traffic" "queries" OP NUMBER
    level        := "at" "p" ("<" | "<=") NUMBER     (on a traffic clause: OP an inequality)
    significance := [METRIC] "not" "significantly" "worse" "at" "p" ("<" | "<=") NUMBER
                  | [METRIC] "significantly" "better" "at" "p" ("<" | "<=") NUMBER
    power        := METRIC "power" "for" NUMBER ["at" "p" ("<" | "<=") NUMBER] (">=" | ">") NUMBER
    METRIC       := NAME "@" K     ndcg, recall, precision (p), mrr, map, hit_rate (success, hit)
    OP           := ">=" | ">" | "<=" | "<" | "=="
    NUMBER       := a decimal such as 0, -0.005, .01, 1e-3 (after "p": a level in (0, 1))

Meaning:

- ``ndcg@10 >= -0.005``: the mean nDCG@10 may drop by at most 0.005.
- ``not significantly worse at p < 0.05``: no metric named in the gate has
  delta < 0 with a paired randomisation p-value < 0.05.
- ``significantly better at p < 0.05``: every metric named in the gate has
  delta > 0 with p < 0.05.
- With a metric in front (``recall@10 significantly better at p < 0.05``)
  a significance clause applies to that metric only.
- ``traffic overlap@10 >= 0.6``: over the live queries mirrored to the shadow
  (shadow traffic), the mean share of the live top 10 that the shadow's top 10
  keeps is at least 0.6. ``traffic rbo >= 0.7`` is the same with rank-biased
  overlap. Unlike the judged clauses these are absolute values, not deltas:
  there is no baseline to subtract, agreement is measured between the two.
- ``traffic p95 latency <= 1.2x``: the shadow's 95th-percentile latency is at
  most 1.2 times the live one's on the same queries.
- ``traffic queries >= 500``: at least that many mirrored queries; without
  any, every traffic clause fails.
- Every traffic clause but ``traffic queries`` is judged by an always-valid
  sequential test (reindexer.traffic.always_valid), at its level
  (``traffic overlap@10 >= 0.6 at p < 0.01``) or at 0.05: it passes once the
  always-valid p-value of "the clause is false" is below the level, and the
  chance that it ever passes a false clause stays at most the level however
  often the gate is evaluated as mirrored traffic accumulates. So a shadow
  whose overlap is 0.61 does not pass ``>= 0.6`` on its first few queries: it
  passes once enough traffic shows it. The latency clause is tested per query:
  ``traffic p95 latency <= 1.2x`` holds when at most 5% of queries take the
  shadow more than 1.2 times their live time.
- With a pipeline in front (``hybrid ndcg@10 >= 0``) a judged clause compares
  the candidate's hybrid pipeline with the baseline's; ``dense vs hybrid
  ndcg@10 >= 0`` compares the candidate's dense retrieval with the baseline's
  hybrid pipeline, and ``dense vs lexical ...`` with BM25 alone. A clause with no
  pipeline judges dense against dense. A significance clause with no metric
  applies to the metrics named by thresholds of the same pipelines.
- ``ndcg@10 power for 0.01 >= 0.8``: this query set's paired test of nDCG@10
  (at the level of the gate's significance clause on that metric and pipelines,
  else ``at p < ...`` when written, else 0.05; two-sided) detects a true change
  of 0.01 with probability at least 0.8, computed from the observed variance of
  the per-query differences (reindexer.evaluation.power). The metric is required
  in front: a power clause is always about one metric. The change is an absolute
  delta (> 0) and the power a probability in (0, 1).
- All clauses must hold.

Verdicts: a gate *passes* when every clause holds, *fails* when a clause is
contradicted by the data (a threshold missed, a significant drop, no significant
gain), and is *inconclusive* otherwise, when the query set is too small to decide:

- a power clause that is not met is INCONCLUSIVE (too few queries, not a bad candidate);
- a "not significantly worse" clause whose test is *under-powered* is INCONCLUSIVE
  rather than PASS. Under-powered: the gate declares the smallest drop that matters
  for that metric and pipelines (the change of its power clause, else the margin
  ``m`` of a threshold ``METRIC >= -m``), and the minimum detectable effect (MDE)
  of the query set at 80% power and the clause's level is larger than that drop,
  so a drop that matters would go unseen more often than one time in five. A
  candidate that is significantly *better* is not inconclusive (a gain was seen).
  ``Gate.parse(..., allow_underpowered=True)`` (``--allow-underpowered``) reports
  such a clause as PASS, saying it is under-powered. Without a declared drop
  (``ndcg@10 >= 0``) the clause is judged as before and its reason states the MDE.

An inconclusive gate refuses promotion like a failed one (GateRefusedError, exit 6).

Multiplicity: every significance test the gate's significance clauses read, over
all their metrics, pipelines and candidates (one evaluation's ``evaluate_all``),
is one family, corrected together before any clause is judged: each clause
compares the *adjusted* p-value with its level. The correction is the gate's
(``Gate.parse(text, correction=...)``): "holm" (the default; Holm's step-down,
which bounds the chance that any test of the family is a false alarm), "bh"
(Benjamini-Hochberg, which bounds the expected share of false alarms among the
significant ones) or "none" (each test at its own level). A test read by two
clauses counts once; a family of one test is never adjusted.

Examples: ``ndcg@10 >= -0.005 and not significantly worse at p < 0.05``,
``recall@10 > 0``, ``mrr@10 >= 0.01 and map@10 >= 0``.

This module is the Gate and its judging of judged clauses (thresholds, significance with its
multiplicity correction, power). The clauses as data are reindexer.evaluation.gate_clauses, reading them
from text reindexer.evaluation.gate_parser (with GRAMMAR, the short form errors print), a decision
reindexer.evaluation.gate_decision, and judging traffic clauses reindexer.evaluation.gate_traffic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from reindexer.errors import UsageError
from reindexer.evaluation.gate_clauses import (
    OPS,
    POWER_ALPHA,
    Clause,
    Judged,
    Power,
    Significance,
    Threshold,
    TrafficClause,
)
from reindexer.evaluation.gate_decision import GateDecision, SignificanceVerdict
from reindexer.evaluation.gate_parser import parse_clauses
from reindexer.evaluation.gate_traffic import judge_traffic
from reindexer.evaluation.metrics import parse_metric
from reindexer.evaluation.pipelines import PIPELINES
from reindexer.evaluation.significance import PairedTest, adjusted_p_values

CORRECTIONS = {"holm": "Holm", "bh": "BH", "none": "uncorrected"}
"""The multiplicity corrections a gate may use (significance.CORRECTION_METHODS), with the word its reasons use."""

CORRECTION_HINT = (
    "--correction holm (the default: Holm's step-down, family-wise error), bh (Benjamini-Hochberg, "
    "false discovery rate) or none (each test at its own level)"
)


def check_correction(correction: str) -> str:
    """``correction`` as a known, lower-case name; a UsageError (exit 2) naming the choices otherwise."""
    name = str(correction).strip().lower()
    if name not in CORRECTIONS:
        raise UsageError(f"unknown multiplicity correction {correction!r}", hint=f"use {CORRECTION_HINT}")
    return name


@dataclass(frozen=True)
class GateInput:
    """What a gate judges one candidate on (see ``Gate.evaluate``)."""

    comparison: Any = None
    traffic: Any = None
    pipelines: Callable[[str, str], Any] | None = None


_TestKey = tuple[str, str, str, str]
"""(candidate, candidate's pipeline, baseline's pipeline, metric): one test of a gate's family."""


def _resolved(clause: Judged) -> tuple[str, str]:
    """The (candidate, baseline) pipelines a judged clause compares."""
    candidate = clause.pipeline or "dense"
    return candidate, clause.versus or candidate


def _test_key(name: str, clause: Significance, metric: str) -> _TestKey:
    candidate, baseline = _resolved(clause)
    return name, candidate, baseline, metric


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def _change(x: float) -> str:
    """A minimum detectable effect: 'none (too few queries)' when no change is detectable."""
    return "none (too few queries for the test to reach its level)" if math.isinf(x) else f"{x:.4f}"


_ORDER = ("PASS", "INCONCLUSIVE", "FAIL")


def _worst(statuses: Any) -> str:
    """A fail outweighs an inconclusive, which outweighs a pass."""
    return max(statuses, key=_ORDER.index, default="PASS")


@dataclass(frozen=True)
class Gate:
    """A parsed gate; ``Gate.parse(text)`` builds one, ``evaluate`` applies it."""

    text: str
    clauses: tuple[Clause, ...]
    correction: str = "holm"
    """How the significance tests of one evaluation are corrected for multiplicity (CORRECTIONS)."""
    allow_underpowered: bool = False
    """Judge a "not significantly worse" clause on an under-powered query set as PASS, not INCONCLUSIVE."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "correction", check_correction(self.correction))

    @classmethod
    def parse(cls, text: str, correction: str = "holm", allow_underpowered: bool = False) -> Gate:
        """``correction`` of the significance tests (CORRECTIONS); ``allow_underpowered``: see the module's Verdicts."""
        correction = check_correction(correction)
        clauses = parse_clauses(text)
        for c in clauses:
            if isinstance(c, TrafficClause):
                continue
            named = [t.metric for t in clauses if isinstance(t, Threshold) and t.pair == c.pair]
            if isinstance(c, Significance) and c.metric is None and not named:
                raise UsageError(
                    f"invalid gate: '{c}' applies to the metrics named in the gate's thresholds of the same "
                    "pipelines, but it names none",
                    hint="put the metric in front ('ndcg@10 not significantly worse at p < 0.05') "
                    "or add a threshold clause ('ndcg@10 >= -0.005 and ...')",
                )
        return cls(text.strip(), tuple(clauses), correction, bool(allow_underpowered))

    @property
    def metrics(self) -> list[str]:
        """Every metric the gate reads, in order of first mention (canonical names)."""
        out: list[str] = []
        for c in self.clauses:
            if isinstance(c, TrafficClause):
                continue
            if c.metric is not None and c.metric not in out:
                out.append(c.metric)
        return out

    @property
    def ks(self) -> list[int]:
        """The cut-offs the evaluation must compute for this gate."""
        return sorted({parse_metric(m)[1] for m in self.metrics})

    @property
    def pipelines(self) -> list[str]:
        """Every pipeline the gate's judged clauses read, dense first (an evaluation must run them)."""
        named = {p for c in self.clauses if not isinstance(c, TrafficClause) for p in c.pair if p}
        return [p for p in PIPELINES if p == "dense" or p in named]

    @property
    def needs_judgements(self) -> bool:
        """Whether any clause reads a judged evaluation (the rest read shadow traffic)."""
        return any(not isinstance(c, TrafficClause) for c in self.clauses)

    @property
    def needs_traffic(self) -> bool:
        return any(isinstance(c, TrafficClause) for c in self.clauses)

    def __str__(self) -> str:
        return " and ".join(str(c) for c in self.clauses)

    def evaluate(
        self,
        comparison: Any = None,
        traffic: Any = None,
        *,
        pipelines: Callable[[str, str], Any] | None = None,
    ) -> GateDecision:
        """Apply the gate to one candidate's comparison and/or its mirrored traffic.

        ``comparison`` is a ``runner.Comparison`` or any mapping of metric
        name to ``PairedTest`` (dense against dense); ``traffic`` a
        ``reindexer.traffic.TrafficSummary``; ``pipelines(candidate pipeline,
        baseline pipeline)`` gives the comparison a pipeline clause reads.
        The candidate's significance tests are the family corrected together.
        """
        return self.evaluate_candidates({"candidate": GateInput(comparison, traffic, pipelines)})["candidate"]

    def evaluate_all(self, result: Any, traffic: Mapping[str, Any] | None = None) -> dict[str, GateDecision]:
        """One decision per candidate version of a ``runner.EvaluationResult``, their tests one family.

        ``traffic`` is each candidate's mirrored traffic, by name, for the traffic clauses.
        """
        return self.evaluate_candidates(
            {
                name: GateInput(
                    result.comparisons[name], (traffic or {}).get(name), partial(result.comparison_for, name)
                )
                for name in result.version_candidates
            }
        )

    def evaluate_candidates(self, candidates: Mapping[str, GateInput]) -> dict[str, GateDecision]:
        """Apply the gate to each candidate; the significance tests of all of them are one family.

        First every test the significance clauses read is gathered (each distinct test once),
        then the family's p-values are adjusted with the gate's correction, then each clause
        is judged: a significance clause by the adjusted p-values.
        """
        for given in candidates.values():
            self._check(given)
        family = self._family(candidates)
        keys = list(family)
        p_values = adjusted_p_values([family[k].p_value for k in keys], self.correction)
        adjusted = {k: float(p) for k, p in zip(keys, p_values, strict=True)}
        size = sum(math.isfinite(t.p_value) for t in family.values())
        return {name: self._judge(name, given, adjusted, size) for name, given in candidates.items()}

    def _tests_of(self, given: GateInput, clause: Judged) -> Mapping[str, PairedTest]:
        candidate, baseline = _resolved(clause)
        if given.pipelines is not None:
            found = given.pipelines(candidate, baseline)
        elif (candidate, baseline) == ("dense", "dense"):
            found = given.comparison
        else:
            raise UsageError(
                f"the gate clause '{clause}' needs the {candidate} and {baseline} pipelines evaluated",
                hint=f"evaluate with --pipelines {','.join(self.pipelines)}",
            )
        return getattr(found, "tests", found) or {}

    def _check(self, given: GateInput) -> None:
        """A UsageError when a judged clause cannot be read from ``given``."""
        if self.needs_judgements and given.comparison is None and given.pipelines is None:
            raise UsageError(f"the gate {self} needs a judged evaluation", hint="pass --queries and --qrels")
        for clause in self.clauses:
            if isinstance(clause, TrafficClause) or clause.metric is None:
                continue
            tests = self._tests_of(given, clause)
            if clause.metric not in tests:
                raise UsageError(
                    f"the gate needs {clause.metric}, which the evaluation did not compute "
                    f"(it has {', '.join(tests) or 'no metrics'})",
                    hint="evaluate with those cut-offs (ks) included",
                )

    def _significance_metrics(self, clause: Significance) -> list[str]:
        """The metrics a significance clause reads: its own, or the thresholds' of the same pipelines."""
        if clause.metric:
            return [clause.metric]
        return list(dict.fromkeys(c.metric for c in self.clauses if isinstance(c, Threshold) and c.pair == clause.pair))

    def _family(self, candidates: Mapping[str, GateInput]) -> dict[_TestKey, PairedTest]:
        """Every significance test the gate reads, over all candidates, each once, in the order read."""
        family: dict[_TestKey, PairedTest] = {}
        for name, given in candidates.items():
            for clause in self.clauses:
                if isinstance(clause, Significance):
                    tests = self._tests_of(given, clause)
                    for metric in self._significance_metrics(clause):
                        family.setdefault(_test_key(name, clause, metric), tests[metric])
        return family

    def _judge(self, name: str, given: GateInput, adjusted: Mapping[_TestKey, float], size: int) -> GateDecision:
        statuses, reasons, verdicts, traffic_tests = [], [], [], []
        for clause in self.clauses:
            if isinstance(clause, TrafficClause):
                ok, detail, sequential = judge_traffic(clause, given.traffic)
                traffic_tests += [sequential] if sequential is not None else []
                status = "PASS" if ok else "FAIL"
            elif isinstance(clause, Threshold):
                ok, detail = self._threshold(clause, self._tests_of(given, clause)[clause.metric])
                status = "PASS" if ok else "FAIL"
            elif isinstance(clause, Power):
                status, detail = self._power(clause, self._tests_of(given, clause)[clause.metric])
            else:
                tests = self._tests_of(given, clause)
                found = [
                    self._verdict(clause, m, tests[m], adjusted[_test_key(name, clause, m)])
                    for m in self._significance_metrics(clause)
                ]
                verdicts += found
                status = _worst("PASS" if v.holds else "INCONCLUSIVE" if v.inconclusive else "FAIL" for v in found)
                detail = "; ".join(self._significance_detail(v, size) for v in found)
            statuses.append(status)
            reasons.append(f"{status} {clause}: {detail}")
        verdict = _worst(statuses).lower()
        return GateDecision(verdict == "pass", reasons, self.correction, size, verdicts, verdict, traffic_tests)

    @staticmethod
    def _threshold(clause: Threshold, test: PairedTest) -> tuple[bool, str]:
        ok = OPS[clause.op](test.delta, clause.value)
        detail = (
            f"delta {_signed(test.delta)} {'meets' if ok else 'misses'} {clause.op} {clause.value:g} "
            f"(baseline {test.baseline_mean:.4f} -> candidate {test.candidate_mean:.4f})"
        )
        return ok, detail

    def _verdict(self, clause: Significance, metric: str, test: PairedTest, p_adjusted: float) -> SignificanceVerdict:
        significant = clause.significant(p_adjusted)
        if clause.better:
            holds = test.delta > 0 and significant
            verdict = "significantly better" if holds else "not significantly better"
        else:
            holds = not (test.delta < 0 and significant)
            verdict = "not significantly worse" if holds else "significantly worse"
        candidate, baseline = _resolved(clause)
        found = SignificanceVerdict(
            str(clause), metric, candidate, baseline, test.delta, test.p_value, p_adjusted, verdict, holds
        )
        return self._powered(found, clause, test, gained=test.delta > 0 and significant)

    # --- power: the power clause and under-powered "not significantly worse" clauses ----------------------------

    def _margin(self, clause: Significance | Power, metric: str) -> float | None:
        """The smallest drop of ``metric`` that matters to this gate, on the clause's pipelines, if it declares one:
        the change of its power clause (the smallest, with several), else the margin ``m`` of ``metric >= -m``."""
        pair = _resolved(clause)
        same = [c for c in self.clauses if not isinstance(c, TrafficClause) and c.metric == metric]
        same = [c for c in same if _resolved(c) == pair]
        effects = [c.effect for c in same if isinstance(c, Power)]
        if effects:
            return min(effects)
        floors = [c.value for c in same if isinstance(c, Threshold) and c.op in (">=", ">")]
        return -max(floors) if floors and max(floors) < 0 else None

    def _powered(
        self, v: SignificanceVerdict, clause: Significance, test: PairedTest, *, gained: bool
    ) -> SignificanceVerdict:
        """``v`` with the query set's MDE at the clause's level; a "not significantly worse" that holds on an
        under-powered set (MDE > the declared drop that matters) is inconclusive, unless the candidate
        significantly gained or the gate allows it."""
        mde = test.mde_at(clause.alpha)
        margin = None if clause.better else self._margin(clause, v.metric)
        underpowered = margin is not None and mde > margin  # an unknown (NaN) MDE is never under-powered
        if not (underpowered and v.holds and not gained):
            return replace(v, mde=mde, margin=margin, underpowered=underpowered)
        if self.allow_underpowered:
            verdict = "not significantly worse (under-powered, allowed)"
            return replace(v, mde=mde, margin=margin, underpowered=True, verdict=verdict)
        return replace(v, mde=mde, margin=margin, underpowered=True, verdict="inconclusive", holds=False,
                       inconclusive=True)  # fmt: skip

    def _power_alpha(self, clause: Power) -> float:
        """A power clause's level: its own, else the strictest significance clause's reading its metric, else 0.05."""
        if clause.alpha is not None:
            return clause.alpha
        pair = _resolved(clause)
        levels = [
            c.alpha
            for c in self.clauses
            if isinstance(c, Significance) and _resolved(c) == pair and clause.metric in self._significance_metrics(c)
        ]
        return min(levels, default=POWER_ALPHA)

    def _power(self, clause: Power, test: PairedTest) -> tuple[str, str]:
        """PASS when the power clause holds; INCONCLUSIVE (the query set is too small to decide) when not."""
        alpha = self._power_alpha(clause)
        power = test.power_for(clause.effect, alpha)
        ok = power == power and OPS[clause.op](power, clause.target)  # NaN (no per-query variance) never holds
        if power != power:
            return "INCONCLUSIVE", "the comparison carries no per-query variance to compute a power from"
        mde = test.mde_at(alpha, clause.target)
        detail = (
            f"power {power:.3f} to detect a change of {clause.effect:g} at p < {alpha:g} (two-sided) over {test.n} "
            f"queries (sd of per-query differences {test.sd_diff:.4f}); the smallest change detectable with "
            f"power {clause.target:g} is {_change(mde)}"
        )
        return ("PASS" if ok else "INCONCLUSIVE"), detail if ok else f"{detail}: judge on more queries"

    def _significance_detail(self, v: SignificanceVerdict, size: int) -> str:
        text = f"{v.metric} delta {_signed(v.delta)}, {self._p_text(v.p_value, v.p_adjusted, size)}"
        mde = f"{_change(v.mde)} at 80% power"
        if v.inconclusive:
            return (
                f"{text} (inconclusive: not significantly worse, but under-powered: the smallest change this query "
                f"set detects with 80% power at the clause's level is {_change(v.mde)}, more than the {v.margin:g} "
                "that matters; "
                "judge on more queries, or accept the risk with --allow-underpowered)"
            )
        if math.isnan(v.mde):
            return f"{text} ({v.verdict})"
        more = f", more than the {v.margin:g} that matters" if v.underpowered else ""
        return f"{text} ({v.verdict}), MDE {mde}{more}"

    def _p_text(self, p_value: float, p_adjusted: float, size: int) -> str:
        """'p = 0.012, Holm-adjusted 0.036 over 3 tests' (with this gate's correction)."""
        tests = f"{size} test{'' if size == 1 else 's'}"
        if self.correction == "none":
            return f"p = {p_value:.4g}, uncorrected over {tests}"
        return f"p = {p_value:.4g}, {CORRECTIONS[self.correction]}-adjusted {p_adjusted:.4g} over {tests}"
