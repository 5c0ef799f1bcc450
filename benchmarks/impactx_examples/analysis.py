"""Run an ImpactX example's own ``analysis_*.py`` on one backend's final beam (child process).

``python -m benchmarks.impactx_examples.analysis OUT WHO ANALYSIS`` runs the analysis script
``ANALYSIS`` unmodified, from a copy of the working folder (the example's folder with the
files the example wrote, less its ``diags`` outputs), on the initial particles
``OUT/initial.npz`` and the final
particles of ``WHO``: ``example`` (ImpactX as the example ran it, ``OUT/final.npz``) or a
backend (``OUT/<backend>_final.npz``, written by :mod:`.track`). It writes
``OUT/<WHO>_analysis.json``: every ``assert`` of the script, by line, with whether it holds
and, for an ``np.allclose``/``np.isclose`` in it, the largest deviation as a multiple of the
allowed one (``|a - b| / (atol + rtol |b|)``, numpy's rule); and the lines that could not be
evaluated here with why.

The analysis reads its beam through ``openpmd_api.Series("diags/openPMD/monitor.h5")``: a
stand-in ``openpmd_api`` module serves the monitor's two iterations (1: the initial beam,
2: the final one) as ImpactX's ``to_df`` does: columns ``position_x, momentum_x, ...,
momentum_t``, ``id`` (1..N in the initial order), lost particles (non-finite rows) left out
of the final beam, the reference particle's ``gamma_ref``, ``beta_gamma_ref``, ``beta_ref``
as the monitor's attributes (recorded by the capture before and after the example's
tracking), and, where the example's monitor computes them
(``nonlinear_lens_invariants``), the invariants ``H`` and ``I`` of the IOTA nonlinear insert
(V. Danilov and S. Nagaitsev, PRSTAB 13, 084002 (2010), Sect. V.A, as ImpactX's
``src/diagnostics/NonlinearLensInvariants.H`` evaluates them). Every other series (e.g.
``particles_lost.h5``: the loss positions, which trackbench's backends do not record) raises
:class:`NotRecorded`, and the statements that need it are reported as not evaluated. The
reduced diagnostics (``diags/reduced_beam_characteristics.*``) are written from the same
two beams (:func:`reduced_characteristics`).

Each top-level statement runs on its own: an ``assert`` is evaluated, not raised, so one
failing check does not hide the later ones; a statement that fails here (it needs something
not recorded, e.g. a third monitor pass, or a module not installed, or a name such a
statement would have bound) is skipped with its reason.
"""

from __future__ import annotations

import ast
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

#: ImpactX ``to_df`` column names, in trackbench's coordinate order x, px, y, py, t, pt.
COLUMNS = ("position_x", "momentum_x", "position_y", "momentum_y", "position_t",
           "momentum_t")
#: The monitor file the example analyses read their beam from.
MONITOR = "monitor.h5"


class NotRecorded(Exception):
    """The analysis asks for data trackbench's run does not record."""


def invariants(particles: np.ndarray, alpha: float, beta: float, tn: float, cn: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """The IOTA nonlinear-insert invariants ``H``, ``I`` [1] of ``(N, >=4)`` particles
    (x, px, y, py [m, 1]) for the bare lattice's Twiss ``alpha`` [1] and ``beta`` [m], the
    insert's strength ``tn`` [1] and scale ``cn`` [m^1/2] (ImpactX
    ``src/diagnostics/NonlinearLensInvariants.H``; Danilov and Nagaitsev, PRSTAB 13, 084002,
    Sect. V.A)."""
    x, px, y, py = (particles[:, i] for i in range(4))
    xn = x / (cn * np.sqrt(beta))
    yn = y / (cn * np.sqrt(beta))
    pxn = px * np.sqrt(beta) / cn + alpha * xn
    pyn = py * np.sqrt(beta) / cn + alpha * yn
    zeta = xn + 1j * yn
    croot = np.sqrt(1.0 - zeta**2)
    carcsin = -1j * np.log(1j * zeta + croot)
    h_potential = (zeta / croot * carcsin).real
    i_potential = ((zeta + np.conj(zeta)) / croot * carcsin).real
    jz = xn * pyn - yn * pxn
    h = (xn**2 + yn**2 + pxn**2 + pyn**2) / 2 + tn * h_potential
    i = jz**2 + pxn**2 + xn**2 + tn * i_potential
    return h, i


def frame(particles: np.ndarray, monitor: dict[str, float] | None) -> Any:
    """One monitor iteration as ImpactX's ``to_df``: a DataFrame of the finite rows."""
    import pandas as pd

    p = np.asarray(particles, dtype=np.float64)
    ids = np.arange(1, len(p) + 1)
    keep = np.all(np.isfinite(p[:, :6]), axis=1)
    data: dict[str, Any] = {"id": ids[keep]}
    for i, name in enumerate(COLUMNS):
        data[name] = p[keep, i]
    for i, name in enumerate(("spin_x", "spin_y", "spin_z"), 6):
        if p.shape[1] > i:
            data[name] = p[keep, i]
    if monitor:
        data["H"], data["I"] = invariants(p[keep], monitor["alpha"], monitor["beta"],
                                          monitor["tn"], monitor["cn"])
    return pd.DataFrame(data)


def openpmd_module(initial: Any, final: Any, references: tuple[dict[str, float],
                                                               dict[str, float]] = ({}, {})
                   ) -> types.ModuleType:
    """A stand-in ``openpmd_api`` serving the monitor's initial and final iterations (with
    the reference particle's attributes ``gamma_ref``, ``beta_gamma_ref``, ``beta_ref`` at
    each, ``references``)."""
    module = types.ModuleType("openpmd_api")

    class _Species:
        def __init__(self, df: Any, attributes: dict[str, float]) -> None:
            self._df = df
            self._attributes = attributes

        def to_df(self) -> Any:
            return self._df.copy()

        def get_attribute(self, name: str) -> float:
            if name not in self._attributes:
                raise NotRecorded(f"monitor attribute {name}: not recorded by trackbench")
            return self._attributes[name]

    class _Iteration:
        def __init__(self, df: Any, attributes: dict[str, float]) -> None:
            self.particles = {"beam": _Species(df, attributes)}

    class Series:  # noqa: D101 - openPMD's name
        def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
            if not str(path).endswith(MONITOR):
                raise NotRecorded(f"{path}: not recorded by trackbench's backends")
            self.iterations = {1: _Iteration(initial, references[0]),
                               2: _Iteration(final, references[1])}

        def close(self) -> None:
            """Nothing to close."""

    module.Series = Series  # type: ignore[attr-defined]
    module.Access = types.SimpleNamespace(read_only="read_only")  # type: ignore[attr-defined]
    return module


def _worst(actual: Any, desired: Any, rtol: float, atol: float) -> float:
    """The largest ``|a - b| / (atol + rtol |b|)`` (numpy's allclose rule; inf where a
    deviation is not allowed at all or a value is not finite)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.broadcast_to(np.asarray(desired, dtype=np.float64), np.broadcast(a, desired).shape)
    a = np.broadcast_to(a, b.shape)
    if a.size == 0:
        return 0.0
    allowed = atol + rtol * np.abs(b)
    deviation = np.abs(a - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(deviation == 0, 0.0, deviation / allowed)
    ratio = np.where(np.isfinite(a) & np.isfinite(b), ratio, np.inf)
    return float(np.max(ratio))


def reduced_characteristics(folder: Path, initial: np.ndarray, final: np.ndarray) -> Path:
    """``folder/diags/reduced_beam_characteristics.0.0`` of the two beams (rows ``step`` 0
    and 1), as ImpactX writes its reduced diagnostics: whitespace-separated, a header, the
    moments of :func:`.moments.moments` (``mean_x``, ``sigma_px``, ``emittance_x``, ...) and
    the spins' ``mean_s*``, ``sigma_s*``, in full double precision."""
    from benchmarks.impactx_examples.moments import moments

    rows = []
    for step, particles in enumerate((initial, final)):
        p = np.asarray(particles, dtype=np.float64)
        p = p[np.all(np.isfinite(p), axis=1)]
        row = {"step": float(step), **moments(p)}
        for i, name in enumerate(("sx", "sy", "sz"), 6):
            if p.shape[1] > i:
                row[f"sigma_{name}"] = float(np.std(p[:, i]))
        rows.append(row)
    names = [k for k in rows[0] if k != "particles"]
    path = folder / "diags" / "reduced_beam_characteristics.0.0"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(names) + "\n" + "".join(
        " ".join(repr(float(r.get(k, np.nan))) for k in names) + "\n" for r in rows))
    return path


def run_analysis(analysis: Path, initial: np.ndarray, final: np.ndarray,
                 monitor: dict[str, float] | None = None,
                 references: tuple[dict[str, float], dict[str, float]] = ({}, {})
                 ) -> dict[str, Any]:
    """The record of ``analysis`` run on ``initial`` and ``final`` (see the module), from
    the current folder."""
    source = analysis.read_text()
    tree = ast.parse(source)
    sys.modules["openpmd_api"] = openpmd_module(frame(initial, monitor),
                                                frame(final, monitor), references)
    closes: list[dict[str, float]] = []
    originals = {name: getattr(np, name) for name in ("allclose", "isclose")}

    def recording(name: str):
        original = originals[name]

        def call(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-8, **kw: Any) -> Any:
            closes.append({"rtol": float(rtol), "atol": float(atol),
                           "worst": _worst(a, b, float(rtol), float(atol))})
            return original(a, b, rtol=rtol, atol=atol, **kw)

        return call

    checks: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    unbound: set[str] = set()
    scope: dict[str, Any] = {"__name__": "__main__", "__file__": str(analysis)}
    for name in originals:
        setattr(np, name, recording(name))
    try:
        for node in tree.body:
            line = node.lineno
            text = ast.get_source_segment(source, node) or ""
            closes.clear()
            try:
                if isinstance(node, ast.Assert):
                    code = compile(ast.Expression(node.test), str(analysis), "eval")
                    holds = bool(eval(code, scope))  # noqa: S307 - the example's analysis
                    check: dict[str, Any] = {"line": line, "holds": holds,
                                             "text": " ".join(text.split())[:160]}
                    if closes:
                        check.update(worst=max(c["worst"] for c in closes),
                                     rtol=closes[-1]["rtol"], atol=closes[-1]["atol"])
                    checks.append(check)
                else:
                    module = ast.Module(body=[node], type_ignores=[])
                    exec(compile(module, str(analysis), "exec"), scope)  # noqa: S102
            except Exception as error:  # noqa: BLE001 - the statement is reported as skipped
                names = {t.id for n in ast.walk(node) if isinstance(n, ast.Assign)
                         for t in n.targets if isinstance(t, ast.Name)}
                needed = (set(_names(node)) - names) & unbound
                why = (f"needs {sorted(needed)[0]}" if isinstance(error, NameError) and needed
                       else f"{type(error).__name__}: {error}")
                unbound |= names
                for name in names:  # a later statement must not read an earlier value
                    scope.pop(name, None)
                skipped.append({"line": line, "reason": why[:160],
                                "assert": isinstance(node, ast.Assert)})
    finally:
        for name, original in originals.items():
            setattr(np, name, original)
    return {"checks": checks, "skipped": skipped}


def _names(node: ast.AST) -> list[str]:
    """The names a statement reads."""
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]


def main(out: str, who: str, analysis: str) -> int:
    """Write ``OUT/<who>_analysis.json`` (a failure is recorded with its last line)."""
    import matplotlib

    matplotlib.use("Agg")
    import os
    import shutil

    folder = Path(out)
    initial = np.load(folder / "initial.npz")["particles"]
    name = "final.npz" if who == "example" else f"{who}_final.npz"
    capture = json.loads((folder / "capture.json").read_text())
    # a copy of the example's folder without its diagnostics, so that the analysis reads
    # only what is made here from the beams judged (the monitor, the reduced diagnostics)
    work = folder / f"{who}_analysis_work"
    shutil.copytree(Path.cwd(), work, ignore=shutil.ignore_patterns("diags", "__pycache__"))
    os.chdir(work)
    try:
        final = np.load(folder / name)["particles"]
        reduced_characteristics(work, initial, final)
        record = run_analysis(Path(analysis), initial, final, capture.get("monitor"),
                              (capture.get("reference_initial", {}),
                               capture.get("reference_final", {})))
    except Exception as error:  # noqa: BLE001 - recorded for the table
        record = {"error": f"{type(error).__name__}: {error}"[:300]}
    (folder / f"{who}_analysis.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
