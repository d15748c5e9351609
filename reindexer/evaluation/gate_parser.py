"""Reading a gate's text into its clauses: the tokenizer, the recursive-descent parser and its errors.

A malformed gate is a UsageError (exit 2) that points at the column and prints the grammar (GRAMMAR).
What the clauses mean and how a gate judges them is reindexer.evaluation.gate's; this module only reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from reindexer.errors import UsageError
from reindexer.evaluation.gate_clauses import Clause, Judged, Power, Significance, Threshold, TrafficClause
from reindexer.evaluation.metrics import parse_metric
from reindexer.evaluation.pipelines import MODEL_PIPELINES, PIPELINES

GRAMMAR = """gate         := clause ("and" clause)*
clause       := [PIPELINE ["vs" PIPELINE]] (threshold | significance | power) | traffic
PIPELINE     := dense | hybrid | dense+rerank | hybrid+rerank | lexical (lexical only after vs: it uses no model)
threshold    := METRIC OP NUMBER
traffic      := "traffic" (overlap@K | rbo | queries) OP NUMBER | "traffic" pNN "latency" OP NUMBER "x"
                (overlap, rbo and latency may end with "at" "p" ("<" | "<=") LEVEL: always valid under repeated looks)
significance := [METRIC] "not" "significantly" "worse" "at" "p" ("<" | "<=") NUMBER
              | [METRIC] "significantly" "better" "at" "p" ("<" | "<=") NUMBER
power        := METRIC "power" "for" CHANGE ["at" "p" ("<" | "<=") LEVEL] (">=" | ">") POWER
                (the metric is required; CHANGE > 0 is an absolute delta; POWER in (0, 1), e.g. 0.8)
METRIC       := ndcg@K | recall@K | precision@K | mrr@K | map@K | hit_rate@K
OP           := ">=" | ">" | "<=" | "<" | "=="
NUMBER       := the allowed delta (candidate - baseline), e.g. -0.005; after "p": a level in (0, 1), e.g. 0.05
example: ndcg@10 >= -0.005 and not significantly worse at p < 0.05
power example: ndcg@10 >= -0.005 and not significantly worse at p < 0.05 and ndcg@10 power for 0.01 >= 0.8
pipeline example: hybrid ndcg@10 >= 0 and dense vs lexical ndcg@10 >= 0
traffic example: traffic overlap@10 >= 0.6 at p < 0.05 and traffic p95 latency <= 1.2x at p < 0.05"""


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

    def at_word(self, word: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.lower() == word

    def judged(self) -> Judged:
        metric = None
        if self.tok.kind == "metric":
            metric = self.metric()
            if self.tok.kind == "op":
                op = self.tok.text
                self.i += 1
                return Threshold(metric, op, self.number("a number (the allowed delta, e.g. -0.005)"))
            if self.at_word("power"):
                return self.power(metric)
            if self.tok.kind != "word":
                self.fail("a comparison operator (>=, >, <=, <, ==) or 'not significantly worse'")
        elif self.at_word("power"):
            _fail(
                self.text,
                self.tok.column,
                "a power clause needs the metric it is about in front, as in 'ndcg@10 power for 0.01 >= 0.8'",
            )
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
        if not self.at_word("at"):
            return TrafficClause(measure, op, value)
        if measure == "queries" or op == "==":
            self.fail("'and' or the end of the gate ('at p < ...' goes with overlap, rbo and latency and <, <=, >, >=)")
        alpha, inclusive = self.level()
        return TrafficClause(measure, op, value, alpha, inclusive)

    def significance(self, metric: str | None) -> Significance:
        negated = self.word("not", "significantly") == "not"
        if negated:
            self.word("significantly")
            self.word("worse")
        else:
            self.word("better")
        alpha, inclusive = self.level()
        return Significance(better=not negated, alpha=alpha, inclusive=inclusive, metric=metric)

    def level(self) -> tuple[float, bool]:
        """``"at" "p" ("<" | "<=") NUMBER``: a significance level in (0, 1), and whether it is inclusive."""
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
        return alpha, inclusive

    def power(self, metric: str) -> Power:
        """After the metric: ``"power" "for" CHANGE ["at" "p" ("<" | "<=") LEVEL] (">=" | ">") POWER``."""
        self.word("power")
        self.word("for")
        column = self.tok.column
        effect = self.number("the absolute change to detect, such as 0.01 (as in 'ndcg@10 power for 0.01 >= 0.8')")
        if not effect > 0:
            _fail(
                self.text,
                column,
                f"the change to detect must be positive, an absolute change of the metric such as 0.01; got {effect:g}",
            )
        alpha, inclusive = self.level() if self.at_word("at") else (None, False)
        if self.tok.kind != "op" or self.tok.text not in (">=", ">"):
            self.fail("'>=' or '>' and the power required, as in '>= 0.8'")
        op = self.tok.text
        self.i += 1
        column = self.tok.column
        target = self.number("the power required, such as 0.8")
        if not 0 < target < 1:
            _fail(self.text, column, f"the power required must be in (0, 1), such as 0.8; got {target:g}")
        return Power(metric, effect, op, target, alpha, inclusive)


def parse_clauses(text: str) -> list[Clause]:
    """The clauses of a gate's text, in order; a UsageError pointing at the first thing that does not parse."""
    return _Parser(text).parse()
