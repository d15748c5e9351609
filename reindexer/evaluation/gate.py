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
    NUMBER       := a decimal such as 0, -0.005, .01, 1e-3

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

Examples: ``ndcg@10 >= -0.005 and not significantly worse at p < 0.05``,
``recall@10 > 0``, ``mrr@10 >= 0.01 and map@10 >= 0``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, NoReturn

from reindexer.errors import UsageError
from reindexer.evaluation.metrics import parse_metric
from reindexer.evaluation.pipelines import MODEL_PIPELINES, PIPELINES
from reindexer.evaluation.significance import PairedTest

GRAMMAR = """gate         := clause ("and" clause)*
clause       := [PIPELINE ["vs" PIPELINE]] (threshold | significance) | traffic
PIPELINE     := dense | hybrid | dense+rerank | hybrid+rerank | lexical (lexical only after vs: it uses no model)
threshold    := METRIC OP NUMBER
traffic      := "traffic" (overlap@K | rbo | queries) OP NUMBER | "traffic" pNN "latency" OP NUMBER "x"
significance := [METRIC] "not" "significantly" "worse" "at" "p" ("<" | "<=") NUMBER
              | [METRIC] "significantly" "better" "at" "p" ("<" | "<=") NUMBER
METRIC       := ndcg@K | recall@K | precision@K | mrr@K | map@K | hit_rate@K
OP           := ">=" | ">" | "<=" | "<" | "=="
NUMBER       := the allowed delta (candidate - baseline), e.g. -0.005
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


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    """One line per clause: 'PASS ...' or 'FAIL ...' with the measured value and the threshold."""

    def as_dict(self) -> dict[str, object]:
        return {"passed": self.passed, "reasons": list(self.reasons)}


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
        if not 0 < alpha <= 1:
            _fail(self.text, column, f"the significance level must be in (0, 1], got {alpha:g}")
        return Significance(better=not negated, alpha=alpha, inclusive=inclusive, metric=metric)


def _signed(x: float) -> str:
    return f"{x:+.4f}"


@dataclass(frozen=True)
class Gate:
    """A parsed gate; ``Gate.parse(text)`` builds one, ``evaluate`` applies it."""

    text: str
    clauses: tuple[Clause, ...]

    @classmethod
    def parse(cls, text: str) -> Gate:
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
        return cls(text.strip(), tuple(clauses))

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
        """
        if self.needs_judgements and comparison is None and pipelines is None:
            raise UsageError(f"the gate {self} needs a judged evaluation", hint="pass --queries and --qrels")

        def tests_of(clause: Threshold | Significance) -> Mapping[str, PairedTest]:
            candidate = clause.pipeline or "dense"
            baseline = clause.versus or candidate
            if pipelines is not None:
                found = pipelines(candidate, baseline)
            elif (candidate, baseline) == ("dense", "dense"):
                found = comparison
            else:
                raise UsageError(
                    f"the gate clause '{clause}' needs the {candidate} and {baseline} pipelines evaluated",
                    hint=f"evaluate with --pipelines {','.join(self.pipelines)}",
                )
            return getattr(found, "tests", found) or {}

        for clause in self.clauses:
            if isinstance(clause, TrafficClause) or clause.metric is None:
                continue
            tests = tests_of(clause)
            if clause.metric not in tests:
                raise UsageError(
                    f"the gate needs {clause.metric}, which the evaluation did not compute "
                    f"(it has {', '.join(tests) or 'no metrics'})",
                    hint="evaluate with those cut-offs (ks) included",
                )
        passed, reasons = True, []
        for clause in self.clauses:
            if isinstance(clause, TrafficClause):
                ok, detail = self._traffic(clause, traffic)
            elif isinstance(clause, Threshold):
                ok, detail = self._threshold(clause, tests_of(clause)[clause.metric])
            else:
                tests = tests_of(clause)
                named = [c.metric for c in self.clauses if isinstance(c, Threshold) and c.pair == clause.pair]
                names = [clause.metric] if clause.metric else list(dict.fromkeys(named))
                ok, detail = self._significance(clause, {m: tests[m] for m in names})
            passed &= ok
            reasons.append(f"{'PASS' if ok else 'FAIL'} {clause}: {detail}")
        return GateDecision(passed, reasons)

    def evaluate_all(self, result: Any) -> dict[str, GateDecision]:
        """One decision per candidate version of a ``runner.EvaluationResult``."""
        return {
            name: self.evaluate(result.comparisons[name], pipelines=partial(result.comparison_for, name))
            for name in result.version_candidates
        }

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
    def _significance(clause: Significance, tests: Mapping[str, PairedTest]) -> tuple[bool, str]:
        parts, ok = [], True
        for name, t in tests.items():
            significant = clause.significant(t.p_value)
            if clause.better:
                holds = t.delta > 0 and significant
                verdict = "significantly better" if holds else "not significantly better"
            else:
                holds = not (t.delta < 0 and significant)
                verdict = "not significantly worse" if holds else "significantly worse"
            ok &= holds
            parts.append(f"{name} delta {_signed(t.delta)}, p = {t.p_value:.4g} ({verdict})")
        return ok, "; ".join(parts)
