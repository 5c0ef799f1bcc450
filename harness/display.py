"""Terminal rendering of result tables (rich) and the number formats shared by reports."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pandas as pd
from rich.console import JustifyMethod
from rich.markup import escape
from rich.table import Table

from harness.model.vocabulary import Status, Verdict
from harness.names import printable


def is_missing(value) -> bool:
    """Whether a cell holds no number (None or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _scaled(value, units: tuple[tuple[str, float], ...]) -> str:
    """``value`` in the first of ``units`` (largest first) whose scale it reaches, else in
    the last, to 3 significant digits; ``-`` for a missing value."""
    if is_missing(value):
        return "-"
    for unit, scale in units[:-1]:
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    unit, scale = units[-1]
    return f"{value / scale:.3g} {unit}"


def format_time(seconds) -> str:
    """A duration with a unit that keeps 3 significant digits (``12.3 ms``)."""
    return _scaled(seconds, (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)))


def format_rate(value) -> str:
    """A rate in SI-prefixed units per second (``1.23 G/s``)."""
    return _scaled(value, (("T/s", 1e12), ("G/s", 1e9), ("M/s", 1e6), ("k/s", 1e3),
                           ("/s", 1.0)))


def format_ratio(value) -> str:
    """A dimensionless number in 2 significant digits, scientific when small or large."""
    if is_missing(value):
        return "-"
    return f"{value:.2e}" if value != 0 and not 1e-2 <= abs(value) < 1e4 else f"{value:.3g}"


def format_count(n) -> str:
    """A particle count as ``1e4`` when a power of ten, else with thousands separators."""
    if is_missing(n):
        return "-"
    n = int(n)
    exponent = math.log10(n) if n > 0 else 0
    return f"1e{int(exponent)}" if n > 0 and exponent == int(exponent) else f"{n:,}"


# keyed by the enum members, looked up with the plain strings of a results frame (a StrEnum
# member hashes and compares as its value)
STATUS_STYLE: dict[str, str] = {
    Status.OK: "green", Status.UNSUPPORTED: "yellow", Status.FAILED: "red",
    Status.TIMEOUT: "red", Status.OOM: "red"}
VERDICT_STYLE: dict[str, str] = {
    Verdict.AGREES: "green", Verdict.DIFFERS: "red", Verdict.MODEL_MISMATCH: "yellow",
    Verdict.NO_REFERENCE: "dim", Verdict.IS_REFERENCE: "cyan", Verdict.BLOW_UP: "red"}


def format_duration(seconds: float | None) -> str:
    """A time left as ``45 s``, ``3 min 20 s`` or ``2 h 05 min`` (``?`` when unknown)."""
    if seconds is None or is_missing(seconds) or not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


@dataclass
class CaseCount:
    """Cases of a run done, running and left, and the estimated time left [s]: the cases
    still to finish at the rate the finished ones came (wall time since the start over
    cases done, which counts the workers running side by side).

    ``slots``: how many cases can run at once (the local workers; 1 serially; None: not
    known, e.g. an outside scheduler). A cluster is handed every case at once; the ones
    beyond the slots wait in its queue and count as left, not as running.
    """

    total: int
    done: int = 0
    submitted: int = 0
    started_at: float = field(default_factory=time.monotonic)
    slots: int | None = None

    def start(self) -> None:
        """A case started (or was handed to the cluster)."""
        self.submitted = min(self.submitted + 1, self.total - self.done)

    def finish(self) -> None:
        """A case finished (cases decided without starting count as well)."""
        self.done = min(self.done + 1, self.total)
        self.submitted = max(0, min(self.submitted - 1, self.total - self.done))

    @property
    def running(self) -> int:
        """Cases started and not finished, at most :attr:`slots`."""
        return self.submitted if self.slots is None else min(self.submitted, self.slots)

    @property
    def left(self) -> int:
        """Cases neither done nor running."""
        return max(0, self.total - self.done - self.running)

    def eta_s(self, now: float | None = None) -> float | None:
        """Estimated seconds until every case is done (None before the first is)."""
        if self.done == 0:
            return None
        elapsed = (time.monotonic() if now is None else now) - self.started_at
        return elapsed / self.done * (self.total - self.done)

    def prefix(self, now: float | None = None) -> str:
        """``[3/12 done, 1 running, 8 left, ETA 1 min 20 s]``."""
        eta = "" if self.done >= self.total else f", ETA {format_duration(self.eta_s(now))}"
        return (f"[{self.done}/{self.total} done, {self.running} running, {self.left} left"
                f"{eta}]")


def progress_line(count: CaseCount, row: dict) -> str:
    """One line for a finished case: ``[3/12 done, 1 running, 8 left, ETA 20 s] ok 1.2 s
    track/... agrees``; the reason (cut to 160 characters) when it did not finish ``ok``.
    Names and reasons are :func:`harness.names.printable`."""
    status = str(row.get("status", "?"))
    wall = row.get("wall_s")
    seconds = f" {format_time(wall)}" if not is_missing(wall) else ""
    what = row.get("verdict") if status == Status.OK else row.get("reason")
    tail = f" {printable(str(what)[:160])}" if what else ""
    return f"{count.prefix()} {printable(status)}{seconds} " \
           f"{printable(row.get('case_id', '?'))}{tail}"


def running_line(count: CaseCount, case_id: str) -> str:
    """One line naming the case that starts now."""
    return f"{count.prefix()} running {printable(case_id)}"


def cell(value) -> str:
    """A table cell from a name or reason: printable (:func:`harness.names.printable`) and
    never read as rich markup."""
    return "" if is_missing(value) else escape(printable(value))


def summary_table(frame: pd.DataFrame, title: str) -> Table:
    """The run summary: one line per case (frame from :func:`harness.compare.summary`)."""
    table = Table(title=title, title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("scenario", "left"), ("backend", "left"), ("N", "right"), ("device", "left"),
        ("dtype", "left"), ("status", "left"), ("threads", "right"), ("time (median)", "right"),
        ("spread", "right"), ("particles/s", "right"), ("max |Δ|/σ", "right"),
        ("verdict", "left"), ("detail", "left"))
    for column, justify in columns:
        table.add_column(column, justify=justify, overflow="fold")
    for row in frame.itertuples(index=False):
        status = "-" if is_missing(row.status) else str(row.status)
        status_style = STATUS_STYLE.get(status, "")
        verdict = "" if is_missing(row.verdict) else str(row.verdict)
        table.add_row(
            cell(row.scenario), cell(row.backend), format_count(row.particles), cell(row.device),
            cell(row.dtype), f"[{status_style}]{cell(status)}[/]" if status_style else cell(status),
            "-" if is_missing(row.threads) else str(int(row.threads)),
            format_time(row.time_median_s),
            "-" if is_missing(row.time_spread) else f"{100 * row.time_spread:.0f}%",
            format_rate(row.throughput_particles_per_s), format_ratio(row.dev_max),
            f"[{VERDICT_STYLE.get(verdict, '')}]{cell(verdict)}[/]" if verdict else "",
            "" if is_missing(row.detail) else cell(str(row.detail)[:120]),
        )
    return table


def comparison_table(frame: pd.DataFrame, title: str) -> Table:
    """Two runs side by side (frame from :func:`harness.compare.side_by_side`)."""
    table = Table(title=title, title_justify="left")
    for column in ("scenario", "backend", "N", "device", "dtype", "old", "new", "speed-up",
                   "old verdict", "new verdict", "regression"):
        table.add_column(column)
    for row in frame.itertuples(index=False):
        table.add_row(
            cell(row.scenario), cell(row.backend), format_count(row.particles), cell(row.device),
            cell(row.dtype), format_time(row.time_median_s_old),
            format_time(row.time_median_s_new),
            "-" if is_missing(row.speedup) else f"x{row.speedup:.2f}",
            cell(row.verdict_old), cell(row.verdict_new),
            f"[red]{row.why}[/red]" if row.regression else "",
        )
    return table
