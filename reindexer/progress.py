"""Progress on stderr: a rich bar on a terminal, steady log lines elsewhere.

``REINDEX_PROGRESS`` chooses: unset, a bar when stderr is a terminal and log
lines when it is not (a cron job, a Kubernetes Job, CI); ``0``/``false``/``no``,
nothing; ``1``/``bar``, the bar wherever; ``lines``, log lines wherever.
Log lines come every ``REINDEX_PROGRESS_INTERVAL`` seconds (default 15) and
once at the end, each with documents done, rate and ETA::

    reindex: embedding docs__v2: 1200/5000 documents (24%), 85.3 docs/s, ETA 44s
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stderr_console = Console(stderr=True)

DEFAULT_INTERVAL = 15.0


def _mode() -> str:
    """``bar``, ``lines`` or ``off``."""
    flag = (os.environ.get("REINDEX_PROGRESS") or "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return "off"
    if flag in ("1", "true", "yes", "bar"):
        return "bar"
    if flag == "lines":
        return "lines"
    return "bar" if sys.stderr.isatty() else "lines"


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("REINDEX_PROGRESS_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class LineProgress:
    """``advance(n)`` that writes one line to stderr at most every ``interval`` seconds, and one at the end."""

    def __init__(
        self,
        description: str,
        total: int | None,
        interval: float,
        unit: str = "documents",
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.description, self.total, self.interval, self.unit = description, total, interval, unit
        self.clock = clock
        self.write = write or self._stderr
        self.done = 0
        self.started = clock()
        self.last = self.started
        self.lock = threading.Lock()

    @staticmethod
    def _stderr(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def line(self, final: bool = False) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        if final:
            return (
                f"reindex: {self.description}: done, {self.done} {self.unit} in {_duration(elapsed)} "
                f"({rate:.1f} {self.unit}/s)"
            )
        if self.total:
            share = f"{self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
            eta = f", ETA {_duration((self.total - self.done) / rate)}" if rate > 0 and self.done < self.total else ""
        else:
            share, eta = f"{self.done} {self.unit}", ""
        return f"reindex: {self.description}: {share}, {rate:.1f} {self.unit}/s{eta}"

    def advance(self, n: int) -> None:
        with self.lock:
            self.done += n
            now = self.clock()
            if now - self.last >= self.interval:
                self.last = now
                self.write(self.line())

    def finish(self) -> None:
        with self.lock:
            self.write(self.line(final=True))


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; a bar where someone watches, log lines where a log records."""
    mode = _mode()
    if mode == "off":
        yield lambda n: None
        return
    if mode == "lines":
        lines = LineProgress(description, total, _interval())
        lines.write(f"reindex: {description}: started" + (f", {total} documents" if total else ""))
        yield lines.advance
        lines.finish()
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
