"""A/A calibration: the gate run many times on comparisons where nothing changed.

A gate's significance clauses promise an error rate: "not significantly worse at
p < 0.05" should call an unchanged model significantly worse at most 5% of the
time, and with several metrics, pipelines and candidates only the multiplicity
correction keeps that promise for the gate as a whole. ``calibrate_scores``
measures the promise on the operator's own queries: it runs the configured gate
(its expression, correction and levels) ``resamples`` times on A/A comparisons and
counts how often each clause, and the gate, raised a false alarm.

Why split halves and not the version against itself: the same version on the
same queries gives per-query differences of exactly zero, so every test says
p = 1 and the A/A says nothing. Each A/A here is instead a random split of the
judged queries into two halves, the first half scored by the baseline arm, the
second by the candidate arm, paired at random (query i of one half with query i
of the other). Which query of a pair lands in which arm is a fair coin, so each
pair's difference is as likely to be -d as d: exactly the null hypothesis the
gate's sign-flip test assumes, with the real spread of per-query scores (hard and
easy queries, ties, metrics that move together) rather than a textbook
distribution. Every metric is read from the same split, so the correlation
between metrics, which decides how conservative Holm is, is the real one. The
price: each A/A compares ``n // 2`` pairs, so the tests have less power than the
real evaluation, which does not change the false-positive rate of an exact test.

With a ``candidate`` (the per-query scores of an independently rebuilt copy of
the live version, the same model; where the store's search is approximate, HNSW
graphs differ from build to build) the candidate half is scored by the copy: the
A/A then holds build noise as well as query noise, and a rate above nominal says
the rebuild itself moves the metrics in a way the gate would call a change.

Per-query scores are computed once (one evaluation); each resample is index
arithmetic on those arrays plus the gate's own tests (``paired_tests``) and its
own judgement (``Gate.evaluate``), so the calibration is of the code the gate runs.
False-positive rates carry a Clopper-Pearson interval (statsmodels'
``proportion_confint``, method "beta").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from reindexer.errors import UsageError
from reindexer.evaluation.gate import Gate
from reindexer.evaluation.gate_clauses import Significance, TrafficClause
from reindexer.evaluation.significance import paired_tests

DEFAULT_RESAMPLES = 1000
PERMUTATIONS = 999
"""Sign flips per A/A test: p-values resolve 0.001, well inside any level a gate names."""
BOOTSTRAP = 200
"""Bootstrap resamples per A/A test: only the reported interval reads them, never a verdict."""
ALARMS = ("significantly worse", "significantly better")
"""Significance verdicts that claim a difference: in an A/A comparison each is a false alarm."""

Scores = Mapping[str, Mapping[str, np.ndarray]]
"""pipeline -> metric -> per-query values, aligned on one query order."""


@dataclass(frozen=True)
class Rate:
    """How often something happened over the A/A resamples, with its Clopper-Pearson interval."""

    events: int
    trials: int
    low: float
    high: float
    confidence: float

    @classmethod
    def of(cls, events: int, trials: int, confidence: float) -> Rate:
        from statsmodels.stats.proportion import proportion_confint

        low, high = proportion_confint(events, trials, alpha=1 - confidence, method="beta")
        return cls(int(events), int(trials), float(low), float(high), confidence)

    @property
    def rate(self) -> float:
        return self.events / self.trials if self.trials else float("nan")

    def verdict(self, nominal: float | None) -> str:
        """Where the rate stands against the clause's level: within, above, or no level to compare."""
        if nominal is None:
            return "no nominal level"
        if self.low > nominal:
            return "above nominal"
        return "within nominal" if self.rate <= nominal else "within nominal (interval)"

    def as_dict(self, nominal: float | None = None) -> dict[str, Any]:
        return {
            "events": self.events,
            "trials": self.trials,
            "rate": round(self.rate, 6),
            "interval": [round(self.low, 6), round(self.high, 6)],
            "confidence": self.confidence,
            "nominal": nominal,
            "verdict": self.verdict(nominal),
        }


@dataclass(frozen=True)
class ClauseCalibration:
    clause: str
    kind: str
    """"significance" (its rate is a false-positive rate, against ``nominal``), "other" (a threshold or
    another rule: how often it fails an unchanged model, no nominal level), or "skipped" (``note`` says why)."""
    rate: Rate | None
    nominal: float | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"clause": self.clause, "kind": self.kind, "note": self.note}
        out.update(self.rate.as_dict(self.nominal) if self.rate else {"rate": None})
        return out


@dataclass(frozen=True)
class Calibration:
    gate: str
    """The gate as calibrated (its A/A-able clauses)."""
    configured: str
    correction: str
    design: str
    resamples: int
    queries: int
    pairs: int
    """Query pairs per A/A comparison (half the judged queries)."""
    seed: int
    nominal: float | None
    """The family's level: the largest alpha of the significance clauses (None without any)."""
    false_positive: Rate
    """Resamples in which any significance clause raised a false alarm: the gate's family-wise error rate."""
    refused: Rate
    """Resamples in which the gate as a whole did not pass the unchanged candidate."""
    clauses: list[ClauseCalibration] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def within_nominal(self) -> bool | None:
        return None if self.nominal is None else self.false_positive.verdict(self.nominal) != "above nominal"

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "configured_gate": self.configured,
            "correction": self.correction,
            "design": self.design,
            "resamples": self.resamples,
            "queries": self.queries,
            "pairs_per_resample": self.pairs,
            "seed": self.seed,
            "nominal": self.nominal,
            "false_positive": self.false_positive.as_dict(self.nominal),
            "refused": self.refused.as_dict(),
            "clauses": [c.as_dict() for c in self.clauses],
            "seconds": round(self.seconds, 3),
        }


def _pair_of(clause: Any) -> tuple[str, str] | None:
    """The (candidate, baseline) pipelines a judged clause compares; None for a traffic clause."""
    if isinstance(clause, TrafficClause):
        return None
    pipeline, versus = getattr(clause, "pair", (None, None))
    candidate = pipeline or "dense"
    return candidate, versus or candidate


def calibratable(gate: Gate) -> tuple[Gate, list[ClauseCalibration]]:
    """The gate restricted to clauses an A/A comparison can judge, and the clauses left out, with why.

    Traffic clauses read mirrored live traffic, not judged queries; a clause comparing two different
    pipelines (``dense vs lexical``) compares two systems that really differ, so it has no A/A null.
    """
    kept, skipped = [], []
    for clause in gate.clauses:
        pair = _pair_of(clause)
        if pair is None:
            why = "reads mirrored traffic, not judged queries (its always-valid test keeps its level as it is re-read)"
        elif pair[0] != pair[1]:
            why = f"compares two different pipelines ({pair[0]} vs {pair[1]}): no A/A null"
        else:
            kept.append(clause)
            continue
        skipped.append(ClauseCalibration(str(clause), "skipped", None, None, why))
    if not kept:
        raise UsageError(
            f"the gate {gate} has no clause an A/A comparison can judge",
            hint="calibrate a gate with judged clauses of one pipeline, e.g. "
            "'ndcg@10 >= -0.005 and not significantly worse at p < 0.05'",
        )
    text = " and ".join(str(c) for c in kept)
    return replace(gate, text=text, clauses=tuple(kept)), skipped


def judged_pipelines(gate: Gate) -> tuple[str, ...]:
    """The pipelines the gate's A/A-able clauses read, dense first (what the evaluation must run)."""
    from reindexer.evaluation.pipelines import PIPELINES

    judged, _ = calibratable(gate)
    named = {p for c in judged.clauses if (pair := _pair_of(c)) for p in pair}
    return tuple(p for p in PIPELINES if p == "dense" or p in named)


def check_copy(versions: list[Any]) -> None:
    """An A/A against a rebuilt copy needs exactly the live version and one copy made by the same model."""
    if len(versions) > 2:
        raise UsageError(
            "--calibrate compares the live version with itself, or with one rebuilt copy",
            hint="pass --versions live, or --versions live,vN where vN is a copy of the live version",
        )
    if len(versions) == 2 and versions[0].model_fingerprint != versions[1].model_fingerprint:
        raise UsageError(
            f"v{versions[1].version} was made by another model than v{versions[0].version}: not an A/A copy",
            hint="rebuild the live version with its own model (a copy plan), or calibrate --versions live",
        )


def calibrate_evaluation(gate: Gate, result: Any, live: str, copy: str | None = None, **options: Any) -> Calibration:
    """``calibrate_scores`` on the per-query scores of a ``runner.EvaluationResult``: the ``live`` arm's
    (a version's label, as ``v3``), and the ``copy`` arm's where an independently rebuilt copy was evaluated."""
    pipelines = judged_pipelines(gate)
    scores = {p: result.per_query[result.arm(live, p)] for p in pipelines}
    other = {p: result.per_query[result.arm(copy, p)] for p in pipelines} if copy else None
    design = (
        f"split-half A/A: live {live} on one random half of the judged queries, its rebuilt copy {copy} "
        "on the other, paired at random"
        if copy
        else f"split-half A/A: live {live} on two random halves of the judged queries, paired at random"
    )
    return calibrate_scores(gate, scores, other, design=design, **options)


def check_resamples(resamples: int) -> int:
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise UsageError(
            f"--resamples must be a whole number of at least 1, got {resamples!r}",
            hint=f"pass --resamples {DEFAULT_RESAMPLES} (a false-positive rate near 0.05 needs about 1,000)",
        )
    return resamples


def calibrate_scores(
    gate: Gate,
    baseline: Scores,
    candidate: Scores | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
    permutations: int = PERMUTATIONS,
    design: str | None = None,
) -> Calibration:
    """Run ``gate`` on ``resamples`` split-half A/A comparisons of ``baseline``'s per-query scores.

    ``baseline[pipeline][metric]`` holds the live version's per-query values (every pipeline and
    metric the gate's A/A-able clauses read); ``candidate``, where given, an independently rebuilt
    copy's on the same queries, which then scores the candidate half.
    """
    import time

    check_resamples(resamples)
    started = time.perf_counter()
    judged, skipped = calibratable(gate)
    pipelines = sorted({p for c in judged.clauses if (pair := _pair_of(c)) for p in pair})
    live = _matrices(baseline, pipelines, judged.metrics)
    copy = _matrices(candidate, pipelines, judged.metrics) if candidate is not None else live
    n = next(iter(live.values())).shape[0]
    if n < 2:
        raise UsageError(
            f"an A/A comparison splits the judged queries in two; {n} is too few", hint="judge more queries"
        )
    if any(copy[p].shape != live[p].shape for p in pipelines):
        raise UsageError("the rebuilt copy was scored on other queries than the live version")
    half = n // 2
    rng = np.random.default_rng(seed)
    alarms = np.zeros(len(judged.clauses), dtype=np.int64)
    significance = np.asarray([isinstance(c, Significance) for c in judged.clauses])
    any_alarm = refused = 0
    for _ in range(resamples):
        order = rng.permutation(n)
        # the first half is the baseline arm, the second the candidate arm; row i of each is one pair
        tests = {
            p: paired_tests(
                {m: live[p][order[:half], j] for j, m in enumerate(judged.metrics)},
                {m: copy[p][order[half : 2 * half], j] for j, m in enumerate(judged.metrics)},
                seed=int(rng.integers(2**63)),
                resamples=BOOTSTRAP,
                permutations=permutations,
                confidence=confidence,
            )
            for p in pipelines
        }
        decision = judged.evaluate(tests.get("dense"), pipelines=partial(_pick, tests))
        flags = _clause_alarms(judged, decision)
        alarms += flags
        any_alarm += bool(flags[significance].any())
        refused += not decision.passed
    return Calibration(
        gate=str(judged),
        configured=str(gate),
        correction=gate.correction,
        design=design or _design(candidate is not None),
        resamples=resamples,
        queries=n,
        pairs=half,
        seed=seed,
        nominal=_nominal(judged),
        false_positive=Rate.of(any_alarm, resamples, confidence),
        refused=Rate.of(refused, resamples, confidence),
        clauses=_per_clause(gate, judged, alarms, resamples, confidence, skipped),
        seconds=time.perf_counter() - started,
    )


def _pick(tests: Mapping[str, Any], candidate: str, baseline: str) -> Any:
    """The A/A tests of one pipeline (every A/A-able clause compares a pipeline with itself)."""
    return tests[candidate]


def _design(copy: bool) -> str:
    if copy:
        return "split-half A/A: live version on one random half, its rebuilt copy on the other, paired at random"
    return "split-half A/A: the live version on two random halves of the judged queries, paired at random"


def _matrices(scores: Scores | None, pipelines: list[str], metrics: list[str]) -> dict[str, np.ndarray]:
    """pipeline -> (queries x metrics) array, every pipeline and metric the gate reads."""
    assert scores is not None
    out = {}
    for p in pipelines:
        if p not in scores:
            raise UsageError(f"the calibration needs the {p} pipeline's scores", hint=f"evaluate --pipelines {p}")
        missing = [m for m in metrics if m not in scores[p]]
        if missing:
            raise UsageError(f"the calibration needs {', '.join(missing)}, which the evaluation did not compute")
        out[p] = np.column_stack([np.asarray(scores[p][m], dtype=np.float64) for m in metrics])
    return out


def _clause_alarms(judged: Gate, decision: Any) -> np.ndarray:
    """Per clause of ``judged``: did it raise a false alarm (significance) or fail (any other clause)?"""
    flags = np.zeros(len(judged.clauses), dtype=bool)
    for i, clause in enumerate(judged.clauses):
        if isinstance(clause, Significance):
            flags[i] = any(v.clause == str(clause) and v.verdict in ALARMS for v in decision.significance)
        else:
            flags[i] = not decision.reasons[i].startswith("PASS")
    return flags


def _nominal(judged: Gate) -> float | None:
    levels = [c.alpha for c in judged.clauses if isinstance(c, Significance)]
    return max(levels) if levels else None


def _per_clause(
    gate: Gate, judged: Gate, counts: np.ndarray, trials: int, confidence: float, skipped: list[ClauseCalibration]
) -> list[ClauseCalibration]:
    """Every clause of the configured gate in its order: its A/A rate, or why it was left out."""
    measured = {}
    for clause, count in zip(judged.clauses, counts, strict=True):
        rate = Rate.of(int(count), trials, confidence)
        if isinstance(clause, Significance):
            measured[str(clause)] = ClauseCalibration(str(clause), "significance", rate, clause.alpha)
        else:
            note = "how often it does not pass an unchanged model: a threshold or power clause is no test of a change"
            measured[str(clause)] = ClauseCalibration(str(clause), "other", rate, None, note)
    left_out = {c.clause: c for c in skipped}
    return [measured.get(str(c)) or left_out[str(c)] for c in gate.clauses]


def render(cal: Calibration) -> list[str]:
    """The calibration as text lines, for the CLI."""

    def pct(r: Rate) -> str:
        return f"{r.rate:.2%} ({r.events}/{r.trials}; {r.confidence:.0%} CI {r.low:.2%}-{r.high:.2%})"

    lines = [
        f"A/A calibration of: {cal.gate}",
        f"  {cal.design}",
        f"  {cal.resamples} resamples of {cal.queries} judged queries ({cal.pairs} pairs each), "
        f"correction {cal.correction}, seed {cal.seed}",
    ]
    if cal.nominal is None:
        lines.append("  the gate has no significance clause: no false-positive rate to calibrate")
    else:
        verdict = cal.false_positive.verdict(cal.nominal)
        lines.append(f"  gate false-positive rate (any significance clause): {pct(cal.false_positive)}, "
                     f"nominal {cal.nominal:g}: {verdict}")  # fmt: skip
    lines.append(f"  gate refused the unchanged model: {pct(cal.refused)}")
    for c in cal.clauses:
        if c.rate is None:
            lines.append(f"  - {c.clause}: skipped ({c.note})")
        elif c.kind == "significance":
            lines.append(f"  - {c.clause}: false positives {pct(c.rate)}, nominal {c.nominal:g}: "
                         f"{c.rate.verdict(c.nominal)}")  # fmt: skip
        else:
            lines.append(f"  - {c.clause}: does not pass {pct(c.rate)} (no nominal level: not a test of a change)")
    return lines
