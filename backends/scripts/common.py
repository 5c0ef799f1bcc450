"""The pieces every standalone script shares: Python literals of the translated lattice,
the script's frame (particles file, warm-up, timed tracks) and the final-moment printout.

A standalone script (``trackbench script RUN_DIR CASE_ID``) imports only its code's own
package and numpy. Its initial particles are a ``.npy`` file beside it in ImpactX's
coordinates: ``(N, 6)`` columns x [m], px [1], y [m], py [1], t [m] (c times the arrival
time lag), pt [1] (minus the energy deviation over p0 c); each script converts them to its
code's coordinates and back with the adapter's formulas (restated in the script), so that
the moments it prints are those of the harness's row.

The printed moments follow :mod:`harness.model.observables` (mean = sum / N, covariance =
centred product / N, sigma = sqrt of the diagonal, emittance = sqrt of the plane's 2x2
determinant), over the particles with finite coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The observables a script prints (the others need the reference particle's dispersion
#: conventions and are left to the harness).
PRINTED_KINDS: tuple[str, ...] = ("mean", "sigma", "emittance")
_INDEX = {"x": 0, "px": 1, "y": 2, "py": 3, "t": 4, "pt": 5}
_PLANES = ("x", "y", "t")


def printed(observables: Sequence[str]) -> list[str]:
    """The scenario's observables a script prints: ``mean_<c>``, ``sigma_<c>``,
    ``emittance_<plane>``."""
    out = []
    for name in observables:
        kind, _, arg = name.partition("_")
        if (kind in ("mean", "sigma") and arg in _INDEX) or (kind == "emittance"
                                                             and arg in _PLANES):
            out.append(name)
    return out


def literal(value: Any) -> str:
    """Python source of a value that evaluates to it exactly (floats by ``repr``, numpy
    arrays as ``np.array([...], dtype=...)``, containers element by element)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, np.ndarray):
        return f"np.array({literal(value.tolist())}, dtype=np.{value.dtype.name})"
    if isinstance(value, np.generic):
        return literal(value.item())
    if isinstance(value, float):
        if math.isnan(value):
            return "float('nan')"
        if math.isinf(value):
            return "float('inf')" if value > 0 else "-float('inf')"
        return repr(value)
    if isinstance(value, int | str | complex):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + "".join(literal(v) + ", " for v in value) + ")"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no literal for a {type(value).__name__}")


def call(function: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
         ) -> str:
    """``function(arg, ..., key=value, ...)`` with exact literals."""
    parts = [literal(a) for a in args]
    parts += [f"{k}={literal(v)}" for k, v in (kwargs or {}).items()]
    return f"{function}({', '.join(parts)})"


MOMENTS = '''
def moments(final, names):
    """Final moments of the particles with finite coordinates, as trackbench computes them:
    mean = sum / N, covariance = centred.T @ centred / N, sigma = sqrt(diagonal),
    emittance = sqrt(det of the plane's 2x2 block)."""
    index = {"x": 0, "px": 1, "y": 2, "py": 3, "t": 4, "pt": 5}
    planes = {"x": (0, 1), "y": (2, 3), "t": (4, 5)}
    alive = final[np.isfinite(final).all(axis=1)]
    n = alive.shape[0]
    mean = alive.sum(axis=0) / n
    centred = alive - mean
    cov = centred.T @ centred / n
    out = {}
    for name in names:
        kind, _, arg = name.partition("_")
        if kind == "mean":
            out[name] = float(mean[index[arg]])
        elif kind == "sigma":
            out[name] = float(np.sqrt(max(cov[index[arg], index[arg]], 0.0)))
        else:
            i, j = planes[arg]
            out[name] = float(np.sqrt(max(cov[i, i] * cov[j, j] - cov[i, j] ** 2, 0.0)))
    return out
'''

MAIN = '''
def main():
    initial = np.load(PARTICLES_FILE)
    build()
    final = extract(track(inject(initial)))  # the warm-up track; its result is printed
    times = []
    for _ in range(REPEAT):
        handle = inject(initial)
        start = time.perf_counter()
        handle = track(handle)
        times.append(time.perf_counter() - start)
    print(f"particles {initial.shape[0]}")
    print(f"time_min_s {min(times)!r}" if times else "time_min_s none")
    print(f"time_median_s {float(np.median(times))!r}" if times else "time_median_s none")
    for name, value in moments(final, OBSERVABLES).items():
        print(f"{name} {value!r}")


if __name__ == "__main__":
    main()
'''


def planned_scenario(plan: Any, code: str, space_charge: str) -> Any:
    """The scenario of a script's plan; ``ValueError`` (``"<code>: <space_charge> are not
    written by the script generator"``) for one with space charge, which a script of
    ``code`` does not state."""
    scenario = plan.scenario
    if scenario.space_charge is not None:
        raise ValueError(f"{code}: {space_charge} are not written by the script generator")
    return scenario


def frame(*, code: str, case_id: str, particles_file: str, repeat: int,
          observables: Sequence[str], imports: str, body: str, notes: str = "") -> str:
    """The whole script: docstring, imports, constants, the code's ``build``, ``inject``,
    ``track``, ``extract`` (``body``), the moments and ``main``."""
    doc = (f'"""{code}: trackbench case {case_id}, as a standalone script.\n\n'
           "It uses only " + code + "'s own API and numpy: builds the lattice, loads the "
           "initial particles\n(the .npy file beside this script, ImpactX coordinates x [m], "
           "px, y [m], py, t [m], pt),\ntracks once as a warm-up, times REPEAT tracks "
           "(time.perf_counter, each from the same\ninitial particles) and prints the least "
           "and median time [s] and the final moments of the\nwarm-up track (SI units: m, "
           "rad, m rad).\n" + (f"\n{notes}\n" if notes else "") + '"""\n')
    return (doc + "\nimport time\nfrom pathlib import Path\n\nimport numpy as np\n"
            + imports.rstrip() + "\n\n"
            + f"PARTICLES_FILE = Path(__file__).with_name({particles_file!r})\n"
            + f"REPEAT = {int(repeat)}\n"
            + f"OBSERVABLES = {literal(list(printed(observables)))}\n\n"
            + body.strip("\n") + "\n\n" + MOMENTS + "\n" + MAIN)
