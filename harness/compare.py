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

from harness.results import load_table

KEY = ["scenario", "backend", "particles", "device", "dtype", "threads_requested"]
SUMMARY_COLUMNS = ["scenario", "backend", "particles", "device", "dtype", "status", "model",
                   "threads", "time_median_s", "time_spread",
                   "throughput_particles_per_s", "throughput_particle_elements_per_s",
                   "dev_max", "verdict", "detail"]


def summary(directory: Path | str) -> pd.DataFrame:
    """One row per tracking case of a run, in run order, with the summary columns."""
    frame = load_table(Path(directory), kind="track")
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    frame = frame.drop_duplicates("case_id", keep="last").copy()
    for column in SUMMARY_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    frame["detail"] = [
        reason if status != "ok" else (detail or "")
        for status, reason, detail in zip(frame["status"], frame.get("reason", ""),
                                          frame.get("verdict_detail", ""), strict=True)
    ]
    return frame[SUMMARY_COLUMNS].reset_index(drop=True)


def side_by_side(old: Path | str, new: Path | str, threshold: float = 0.1) -> pd.DataFrame:
    """Cases of two runs matched by :data:`KEY`, with speed-up and regression flags."""
    a = load_table(Path(old), kind="track")
    b = load_table(Path(new), kind="track")
    columns = [*KEY, "status", "time_median_s", "dev_max", "verdict"]
    for frame in (a, b):
        for column in columns:
            if column not in frame:
                frame[column] = np.nan
    a = a.drop_duplicates("case_id", keep="last")[columns]
    b = b.drop_duplicates("case_id", keep="last")[columns]
    for frame in (a, b):
        frame["threads_requested"] = frame["threads_requested"].fillna(0).astype(int)
    merged = a.merge(b, on=KEY, how="outer", suffixes=("_old", "_new"))
    merged["speedup"] = merged["time_median_s_old"] / merged["time_median_s_new"]
    slower = merged["speedup"] < 1.0 - threshold
    lost_agreement = (merged["verdict_old"] == "agrees") & (merged["verdict_new"] != "agrees")
    broke = (merged["status_old"] == "ok") & (merged["status_new"] != "ok")
    merged["regression"] = slower | lost_agreement | broke
    merged["why"] = [
        "; ".join(reason for flag, reason in ((s, f"slower x{1 / x:.2f}" if x else "slower"),
                                              (v, "agreement lost"), (k, "no longer ok"))
                  if flag)
        for s, v, k, x in zip(slower, lost_agreement, broke, merged["speedup"], strict=True)
    ]
    return merged.reset_index(drop=True)
