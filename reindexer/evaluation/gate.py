"""The promotion gate: a small expression over a candidate-vs-baseline comparison.

Every number is an allowed *delta*, candidate minus baseline, never an
absolute score: a gate should survive a change of query set, absolute
scores do not.

Grammar (keywords and metric names are case-insensitive)::

    gate         := clause ("and" clause)*
    clause       := [PIPELINE ["vs" PIPELINE]] (threshold | significance) | traffic
    PIPELINE     := "dense" | "hybrid" | "dense+rerank" | "hybrid+rerank"
                  | "lexical" (lexical only after "vs")
    threshold    := METRIC OP NUMBER
    traffic      := "traffic" ( "overlap@" K | "rbo" ) OP NUMBER
                  | "traffic" "p" PCT "latency" OP NUMBER "x"
                  | "traffic" "queries" OP NUMBER
    significance := [METRIC] "not" "significantly" "worse" "at" "p" ("<" | "<=") NUMBER
                  | [METRIC] "significantly" "better" "at" "p" ("<" | "<=") NUMBER
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
- With a pipeline in front (``hybrid ndcg@10 >= 0``) a judged clause compares
  the candidate's hybrid pipeline with the baseline's; ``dense vs hybrid
  ndcg@10 >= 0`` compares the candidate's dense retrieval with the baseline's
  hybrid pipeline, and ``dense vs lexical ...`` with BM25 alone. A clause with no
  pipeline judges dense against dense. A significance clause with no metric
  applies to the metrics named by thresholds of the same pipelines.
- All clauses must hold.

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
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, NoReturn

from reindexer.errors import UsageError
from reindexer.evaluation.metrics import parse_metric
from reindexer.evaluation.pipelines import MODEL_PIPELINES, PIPELINES
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


GRAMMAR = """gate         := clause ("and" clause)*
clause       := [PIPELINE ["vs" PIPELINE]] (threshold | significance) | traffic
PIPELINE     := dense | hybrid | dense+rerank | hybrid+rerank | lexical (lexical only after vs: it uses no model)
threshold    := METRIC OP NUMBER
traffic      := "traffic" (overlap@K | rbo | queries) OP NUMBER | "traffic" pNN "latency" OP NUMBER "x"
significance := [METRIC] "not" "significantly" "worse" "at" "p" ("<" | "<=") NUMBER
              | [METRIC] "significantly" "better" "at" "p" ("<" | "<=") NUMBER
METRIC       := ndcg@K | recall@K | precision@K | mrr@K | map@K | hit_rate@K
OP           := ">=" | ">" | "<=" | "<" | "=="
NUMBER       := the allowed delta (candidate - baseline), e.g. -0.005; after "p": a level in (0, 1), e.g. 0.05
example: ndcg@10 >= -0.005 and not significantly worse at p < 0.05
pipeline example: hybrid ndcg@10 >= 0 and dense vs lexical ndcg@10 >= 0
traffic example: traffic overlap@10 >= 0.6 and traffic p95 latency <= 1.2x"""

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<metric>[A-Za-z_]+@\d+)
  | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<op>>=|<=|==|>|<)
  | (?P<word>[A-Za-z_]+(?:\+[A-Za-z_]+)?)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # metric, number, op, word, end
    text: str
    column: int  # 1-based


def _tokenize(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            _fail(text, pos + 1, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        if kind != "space":
            tokens.append(_Token(kind, m.group(), pos + 1))
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _fail(text: str, column: int, what: str) -> NoReturn:
    pointer = " " * (column - 1) + "^"
    raise UsageError(f"invalid gate at column {column}: {what}\n  {text}\n  {pointer}", hint=f"grammar:\n{GRAMMAR}")


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


@dataclass(frozen=True)
class TrafficClause:
    """A clause over mirrored live traffic (reindexer.traffic.TrafficSummary)."""

    measure: str  # "overlap@K", "rbo", "queries", or "pNN latency"
    op: str
    value: float

    @property
    def is_latency(self) -> bool:
        return self.measure.endswith("latency")

    def __str__(self) -> str:
        return f"traffic {self.measure} {self.op} {self.value:g}{'x' if self.is_latency else ''}"

    def measured(self, traffic: Any) -> float:
        if self.measure == "queries":
            return float(traffic.queries)
        if self.measure == "rbo":
            return traffic.rbo.mean
        if self.measure.startswith("overlap@"):
            return traffic.overlap_at(int(self.measure.split("@")[1]))
        return traffic.latency_ratio(int(self.measure[1:].split()[0]))


Clause = Threshold | Significance | TrafficClause


def _pipelines_prefix(clause: Threshold | Significance) -> str:
    if clause.pipeline is None:
        return ""
    return f"{clause.pipeline} vs {clause.versus} " if clause.versus else f"{clause.pipeline} "


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
        }


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    """One line per clause: 'PASS ...' or 'FAIL ...' with the measured value and the threshold."""
    correction: str = "holm"
    """The gate's multiplicity correction (CORRECTIONS)."""
    family_size: int = 0
    """How many significance tests were corrected together (every candidate's of one evaluation)."""
    significance: list[SignificanceVerdict] = field(default_factory=list)
    """Every significance test this candidate's clauses read, in the order of the reasons."""

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "correction": self.correction,
            "family_size": self.family_size,
            "significance": [v.as_dict() for v in self.significance],
        }


@dataclass(frozen=True)
class GateInput:
    """What a gate judges one candidate on (see ``Gate.evaluate``)."""

    comparison: Any = None
    traffic: Any = None
    pipelines: Callable[[str, str], Any] | None = None


_TestKey = tuple[str, str, str, str]
"""(candidate, candidate's pipeline, baseline's pipeline, metric): one test of a gate's family."""


def _resolved(clause: Threshold | Significance) -> tuple[str, str]:
    """The (candidate, baseline) pipelines a judged clause compares."""
    candidate = clause.pipeline or "dense"
    return candidate, clause.versus or candidate


def _test_key(name: str, clause: Significance, metric: str) -> _TestKey:
    candidate, baseline = _resolved(clause)
    return name, candidate, baseline, metric


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _found(self) -> str:
        return "the end of the gate" if self.tok.kind == "end" else repr(self.tok.text)

    def fail(self, expected: str) -> Any:
        return _fail(self.text, self.tok.column, f"expected {expected}, found {self._found()}")

    def word(self, *choices: str) -> str:
        if self.tok.kind == "word" and self.tok.text.lower() in choices:
            self.i += 1
            return self.tokens[self.i - 1].text.lower()
        return self.fail(" or ".join(repr(c) for c in choices))

    def number(self, what: str) -> float:
        if self.tok.kind != "number":
            self.fail(what)
        self.i += 1
        return float(self.tokens[self.i - 1].text)

    def metric(self) -> str:
        tok = self.tok
        try:
            family, k = parse_metric(tok.text)
        except ValueError:
            known = "ndcg, recall, precision, mrr, map, hit_rate, each @k"
            return _fail(self.text, tok.column, f"unknown metric {tok.text!r} (known: {known})")
        self.i += 1
        return f"{family}@{k}"

    def parse(self) -> list[Clause]:
        if self.tok.kind == "end":
            self.fail("a clause such as 'ndcg@10 >= 0'")
        clauses = [self.clause()]
        while self.tok.kind != "end":
            self.word("and")
            clauses.append(self.clause())
        return clauses

    def pipelines(self) -> tuple[str | None, str | None]:
        """An optional ``PIPELINE ["vs" PIPELINE]`` in front of a judged clause."""
        if not (self.tok.kind == "word" and self.tok.text.lower() in PIPELINES):
            return None, None
        tok = self.tok
        pipeline = self.word(*PIPELINES)
        if pipeline not in MODEL_PIPELINES:
            _fail(
                self.text,
                tok.column,
                f"{pipeline!r} retrieval does not use the model, so the candidate cannot be judged on it; "
                f"compare a model's pipeline against it, as in 'dense vs {pipeline} ndcg@10 >= 0'",
            )
        versus = None
        if self.tok.kind == "word" and self.tok.text.lower() == "vs":
            self.i += 1
            versus = self.word(*PIPELINES)
        return pipeline, versus

    def clause(self) -> Clause:
        if self.tok.kind == "word" and self.tok.text.lower() == "traffic":
            self.i += 1
            return self.traffic()
        pipeline, versus = self.pipelines()
        clause = self.judged()
        return clause if pipeline is None else replace(clause, pipeline=pipeline, versus=versus)

    def judged(self) -> Threshold | Significance:
        metric = None
        if self.tok.kind == "metric":
            metric = self.metric()
            if self.tok.kind == "op":
                op = self.tok.text
                self.i += 1
                return Threshold(metric, op, self.number("a number (the allowed delta, e.g. -0.005)"))
            if self.tok.kind != "word":
                self.fail("a comparison operator (>=, >, <=, <, ==) or 'not significantly worse'")
        elif self.tok.kind != "word":
            self.fail("a metric such as 'ndcg@10' or 'not significantly worse'")
        return self.significance(metric)

    def traffic(self) -> TrafficClause:
        tok = self.tok
        if tok.kind == "metric" and tok.text.lower().startswith("overlap@"):
            k = int(tok.text.split("@")[1])
            if k < 1:
                _fail(self.text, tok.column, "overlap needs a cut-off of at least 1")
            self.i += 1
            measure = f"overlap@{k}"
        elif tok.kind == "word" and tok.text.lower() in ("rbo", "queries"):
            self.i += 1
            measure = tok.text.lower()
        elif tok.kind == "word" and tok.text.lower() == "p":
            self.i += 1
            column = self.tok.column
            pct = self.number("a percentile such as 95 (as in 'p95 latency')")
            if not (0 < pct <= 100 and pct == int(pct)):
                _fail(self.text, column, f"the percentile must be a whole number in 1..100, got {pct:g}")
            self.word("latency")
            measure = f"p{int(pct)} latency"
        else:
            return self.fail("'overlap@K', 'rbo', 'queries' or 'pNN latency' after 'traffic'")
        if self.tok.kind != "op":
            self.fail("a comparison operator (>=, >, <=, <, ==)")
        op = self.tok.text
        self.i += 1
        value = self.number("a number")
        if measure.endswith("latency"):
            self.word("x")
        return TrafficClause(measure, op, value)

    def significance(self, metric: str | None) -> Significance:
        negated = self.word("not", "significantly") == "not"
        if negated:
            self.word("significantly")
            self.word("worse")
        else:
            self.word("better")
        self.word("at")
        self.word("p")
        if self.tok.kind != "op" or self.tok.text not in ("<", "<="):
            self.fail("'<' or '<=' after 'p'")
        inclusive = self.tok.text == "<="
        self.i += 1
        column = self.tok.column
        alpha = self.number("a significance level such as 0.05")
        if not 0 < alpha < 1:
            _fail(self.text, column, f"the significance level must be in (0, 1), such as 0.05; got {alpha:g}")
        return Significance(better=not negated, alpha=alpha, inclusive=inclusive, metric=metric)


def _signed(x: float) -> str:
    return f"{x:+.4f}"


@dataclass(frozen=True)
class Gate:
    """A parsed gate; ``Gate.parse(text)`` builds one, ``evaluate`` applies it."""

    text: str
    clauses: tuple[Clause, ...]
    correction: str = "holm"
    """How the significance tests of one evaluation are corrected for multiplicity (CORRECTIONS)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "correction", check_correction(self.correction))

    @classmethod
    def parse(cls, text: str, correction: str = "holm") -> Gate:
        correction = check_correction(correction)
        clauses = _Parser(text).parse()
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
        return cls(text.strip(), tuple(clauses), correction)

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

    def _tests_of(self, given: GateInput, clause: Threshold | Significance) -> Mapping[str, PairedTest]:
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
        passed, reasons, verdicts = True, [], []
        for clause in self.clauses:
            if isinstance(clause, TrafficClause):
                ok, detail = self._traffic(clause, given.traffic)
            elif isinstance(clause, Threshold):
                ok, detail = self._threshold(clause, self._tests_of(given, clause)[clause.metric])
            else:
                tests = self._tests_of(given, clause)
                found = [
                    self._verdict(clause, m, tests[m], adjusted[_test_key(name, clause, m)])
                    for m in self._significance_metrics(clause)
                ]
                verdicts += found
                ok = all(v.holds for v in found)
                detail = "; ".join(self._significance_detail(v, size) for v in found)
            passed &= ok
            reasons.append(f"{'PASS' if ok else 'FAIL'} {clause}: {detail}")
        return GateDecision(passed, reasons, self.correction, size, verdicts)

    @staticmethod
    def _traffic(clause: TrafficClause, traffic: Any) -> tuple[bool, str]:
        if traffic is None or traffic.queries == 0:
            return False, "no mirrored queries for this shadow (run the Searcher or `reindex serve` with shadow_sample)"
        value = clause.measured(traffic)
        ok = value == value and _OPS[clause.op](value, clause.value)  # NaN never passes
        unit = "x" if clause.is_latency else ""
        return ok, (
            f"{value:.4f}{unit} {'meets' if ok else 'misses'} {clause.op} {clause.value:g}{unit} "
            f"over {traffic.queries} mirrored queries"
        )

    @staticmethod
    def _threshold(clause: Threshold, test: PairedTest) -> tuple[bool, str]:
        ok = _OPS[clause.op](test.delta, clause.value)
        detail = (
            f"delta {_signed(test.delta)} {'meets' if ok else 'misses'} {clause.op} {clause.value:g} "
            f"(baseline {test.baseline_mean:.4f} -> candidate {test.candidate_mean:.4f})"
        )
        return ok, detail

    @staticmethod
    def _verdict(clause: Significance, metric: str, test: PairedTest, p_adjusted: float) -> SignificanceVerdict:
        significant = clause.significant(p_adjusted)
        if clause.better:
            holds = test.delta > 0 and significant
            verdict = "significantly better" if holds else "not significantly better"
        else:
            holds = not (test.delta < 0 and significant)
            verdict = "not significantly worse" if holds else "significantly worse"
        candidate, baseline = _resolved(clause)
        return SignificanceVerdict(
            str(clause), metric, candidate, baseline, test.delta, test.p_value, p_adjusted, verdict, holds
        )

    def _significance_detail(self, v: SignificanceVerdict, size: int) -> str:
        return f"{v.metric} delta {_signed(v.delta)}, {self._p_text(v.p_value, v.p_adjusted, size)} ({v.verdict})"

    def _p_text(self, p_value: float, p_adjusted: float, size: int) -> str:
        """'p = 0.012, Holm-adjusted 0.036 over 3 tests' (with this gate's correction)."""
        tests = f"{size} test{'' if size == 1 else 's'}"
        if self.correction == "none":
            return f"p = {p_value:.4g}, uncorrected over {tests}"
        return f"p = {p_value:.4g}, {CORRECTIONS[self.correction]}-adjusted {p_adjusted:.4g} over {tests}"
