"""Tables of run directories: the summary of one run, or two runs side by side.

Two runs are matched case by case (scenario, backend, particles, device, dtype, threads);
``speedup`` is the old median time over the new one (> 1: the new run is faster). A case
is a regression when its speed-up is below ``1 - threshold`` or its verdict went from
``agrees`` to something else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.model.vocabulary import Status, Verdict
from harness.results import load_table, read_rows

KEY = ["scenario", "backend", "particles", "device", "dtype", "math", "threads_requested"]
SUMMARY_COLUMNS = ["scenario", "backend", "particles", "device", "dtype", "status", "model",
                   "threads", "time_median_s", "time_spread",
                   "throughput_particles_per_s", "throughput_particle_elements_per_s",
                   "dev_max", "verdict", "detail"]


def summary(directory: Path | str) -> pd.DataFrame:
    """One row per tracking case of a run, in run order, with the summary columns."""
    frame = load_table(Path(directory), kind="track")
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    if "case_id" in frame:
        frame = frame.drop_duplicates("case_id", keep="last")
    frame = frame.copy()
    for column in [*SUMMARY_COLUMNS, "reason", "verdict_detail"]:
        if column not in frame:
            frame[column] = np.nan
    frame["detail"] = [
        _text(reason) if status != Status.OK else _text(detail)
        for status, reason, detail in zip(frame["status"], frame["reason"],
                                          frame["verdict_detail"], strict=True)
    ]
    return frame[SUMMARY_COLUMNS].reset_index(drop=True)


def _text(value) -> str:
    """A cell as text ('' when empty)."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def rejudged(directory: Path | str) -> pd.DataFrame:
    """The summary of a run with each verdict judged again from the stored deviations under
    today's tolerances (:func:`harness.agreement.rejudge`), and ``stored_verdict`` beside
    it; nothing is re-run and the run directory is not changed."""
    from harness.agreement import rejudge

    rows = [row for row in read_rows(Path(directory)) if row.get("kind") == "track"]
    latest: dict = {}
    for row in rows:  # in the order of each case's last row, as summary() keeps them
        latest.pop(row.get("case_id"), None)
        latest[row.get("case_id")] = row
    frame = summary(directory)
    stored, verdicts, details = [], [], []
    for case_row, row in zip(latest.values(), frame.itertuples(index=False), strict=True):
        judged = rejudge(case_row)
        stored.append(row.verdict)
        verdicts.append(row.verdict if judged is None else judged[0])
        details.append(row.detail if judged is None else judged[1])
    frame["stored_verdict"] = stored
    frame["verdict"] = verdicts
    frame["detail"] = details
    return frame


def _verdict_text(value) -> str:
    """A verdict cell as text, '' for none (None and NaN are both 'no verdict')."""
    return _text(value)


def changed_verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`rejudged` frame whose verdict changed: a case without a verdict
    before and after (a failed or unsupported case, stored as None or NaN) is unchanged."""
    if frame.empty:
        return frame
    changed = [_verdict_text(new) != _verdict_text(old)
               for new, old in zip(frame["verdict"], frame["stored_verdict"], strict=True)]
    return frame[changed]


def side_by_side(old: Path | str, new: Path | str, threshold: float = 0.1) -> pd.DataFrame:
    """Cases of two runs matched by :data:`KEY`, with speed-up and regression flags."""
    a = load_table(Path(old), kind="track")
    b = load_table(Path(new), kind="track")
    columns = [*KEY, "status", "time_median_s", "dev_max", "verdict"]
    for frame in (a, b):
        for column in columns:
            if column not in frame:
                frame[column] = np.nan
    a = (a.drop_duplicates("case_id", keep="last") if "case_id" in a else a)[columns]
    b = (b.drop_duplicates("case_id", keep="last") if "case_id" in b else b)[columns]
    for frame in (a, b):  # one dtype per key, also for an empty or partial run
        frame["threads_requested"] = frame["threads_requested"].fillna(0).astype(int)
        frame["math"] = frame["math"].fillna("ieee").astype(object)  # runs before the setting
        frame["particles"] = frame["particles"].astype(float)
        for column in ("scenario", "backend", "device", "dtype"):
            frame[column] = frame[column].astype(object)
    merged = a.merge(b, on=KEY, how="outer", suffixes=("_old", "_new"))
    merged["speedup"] = merged["time_median_s_old"] / merged["time_median_s_new"]
    slower = merged["speedup"] < 1.0 - threshold
    lost_agreement = ((merged["verdict_old"] == Verdict.AGREES)
                      & (merged["verdict_new"] != Verdict.AGREES))
    broke = (merged["status_old"] == Status.OK) & (merged["status_new"] != Status.OK)
    merged["regression"] = slower | lost_agreement | broke
    merged["why"] = [
        "; ".join(reason for flag, reason in ((s, f"slower x{1 / x:.2f}" if x else "slower"),
                                              (v, "agreement lost"), (k, "no longer ok"))
                  if flag)
        for s, v, k, x in zip(slower, lost_agreement, broke, merged["speedup"], strict=True)
    ]
    return merged.reset_index(drop=True)
