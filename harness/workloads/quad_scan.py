"""The quadrupole-scan reconstruction workload: recover a beam's initial transverse
sigma-matrix from beam sizes measured on a screen at K quadrupole strengths.

The problem (:func:`make_problem`): a scenario whose lattice is a quadrupole, drifts and a
screen at the lattice end (``lattices/quad_scan.yaml``); its beam is the *known* beam. The
known beam is drawn with the scenario's seed + 1 (a sample of its own), tracked through
ImpactX at every strength, and its rms sizes sigma_x, sigma_y at the screen, times
``1 + noise * N(0, 1)`` (seeded), are the measurements. The truth is the sample
sigma-matrix of that drawn beam (the moments the screen saw), beside the scenario's Twiss.

Every method minimises the same objective, the sum over settings and planes of
``(sigma_model^2 / sigma_measured^2 - 1)^2``; it is linear in the initial sigma-matrix
elements of each plane (Minty & Zimmermann, *Measuring and Controlling Charged Particle
Beams*, Springer 2003, sec. 4.2, eq. 4.13)::

    sigma_11,screen = R11^2 sigma_11 + 2 R11 R12 sigma_12 + R12^2 sigma_22

so for a linear model the analytic weighted linear least-squares solution
(:func:`analytic`) is the reference answer. For a chromatic model (the paraxial tier,
``lattices/quad_scan_chromatic.yaml``: each particle's focusing and drift depend on its
energy, ImpactX ``src/elements/ChrQuad.H``, ``ChrDrift.H``) there is no closed form: the
linear answer is a biased baseline and the reference is the best fit
(:attr:`Problem.closed_form`). The other methods fit a model beam (the scenario's beam
sampler at Twiss values theta, ``len = --particles``) tracked by a backend:

* gradient-based (:mod:`harness.workloads.fits`): Gauss-Newton (Levenberg-Marquardt) and
  L-BFGS through a backend's :meth:`~backends.base.Backend.differentiable_observables`,
  all K settings as one batch where the backend takes a batch of parameter sets;
* gradient-free: Nelder-Mead (scipy's and Xopt's) through any backend, the model beam
  tracked at every setting by :meth:`~backends.base.Prepared.track`.

The model beam's sigma-matrix at a solution is that of the particles the backend tracked,
so every exact method converges to the analytic answer whatever the particle count.
Units: sigma-matrix elements in m^2, m rad, rad^2 (ImpactX's x, px = p_x / p_ref).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backends.registry import get_backend
from harness.model import observables
from harness.model.parameters import resolve_parameter
from harness.model.particles import beam_cholesky, beam_unit_samples, generate
from harness.model.scenario import Scenario
from harness.model.scenario_edit import with_values

#: Twiss fields fitted, per plane, in the order of the fit vector.
TWISS_FIELDS = ("beta_x", "alpha_x", "emittance_x", "beta_y", "alpha_y", "emittance_y")
#: Names of the six initial sigma-matrix elements reported (x then y plane).
SIGMA_ELEMENTS = ("s11_x", "s12_x", "s22_x", "s11_y", "s12_y", "s22_y")
#: Relative agreement with the analytic answer that counts as reaching it.
TARGET = 1e-6
#: The starting guess of every fit [m, 1, m rad]: a round beam at a waist, stated, not tuned.
START = {"beta_x": 10.0, "alpha_x": 0.0, "emittance_x": 1.0e-8,
         "beta_y": 10.0, "alpha_y": 0.0, "emittance_y": 1.0e-8}


class WorkloadError(ValueError):
    """Bad workload input: one line naming what was expected."""


@dataclass
class Problem:
    """A quad-scan problem and its synthetic measurements.

    Attributes:
        scenario: the scenario (its beam is the known beam).
        parameter: the scanned parameter name (``q.Kn1``) [1/m^2].
        strengths: ``(K,)`` scanned values [1/m^2].
        measured: ``(K, 2)`` measured rms sizes sigma_x, sigma_y at the screen [m].
        truth: ``(2, 3)`` sample sigma-matrix elements (s11, s12, s22) per plane of the
            measured beam [m^2, m rad, rad^2].
        noise: relative rms noise on each measured size [1].
        noise_seed: seed of the noise draws.
        particles: model-beam particle count of the fits.
        measure_particles: particles of the measured beam.
        measure_seconds: wall time of the ImpactX measurements [s].
    """

    scenario: Scenario
    parameter: str
    strengths: np.ndarray
    measured: np.ndarray
    truth: np.ndarray
    noise: float
    noise_seed: int
    particles: int
    measure_particles: int
    measure_seconds: float = 0.0

    @property
    def closed_form(self) -> bool:
        """Whether the analytic answer is the exact optimum of the objective: the linear
        model (the paraxial and exact tiers are chromatic, so the linear least squares is
        then a biased baseline)."""
        return self.scenario.model == "linear"


def default_parameter(scenario: Scenario) -> str:
    """``<first quadrupole>.Kn1``: the scanned parameter unless one is named."""
    for element in scenario.elements:
        if element.kind == "Quadrupole":
            return f"{element.name}.Kn1"
    raise WorkloadError(f"scenario {scenario.name}: a quad scan needs a Quadrupole element")


def check_parameter(scenario: Scenario, name: str) -> str:
    """The scanned parameter, resolved (an element field); WorkloadError otherwise."""
    try:
        parameter = resolve_parameter(scenario, name)
    except KeyError as error:
        raise WorkloadError(f"--parameter {name!r}: expected {error.args[0]}") from None
    kinds = {e.kind for e in scenario.elements if e.name == parameter.owner}
    if parameter.target != "element" or parameter.field != "Kn1" or kinds != {"Quadrupole"}:
        raise WorkloadError(f"--parameter {name!r}: expected the Kn1 of a Quadrupole "
                            "element (q.Kn1)")
    return name


def sizes_of(final: np.ndarray, scenario: Scenario) -> np.ndarray:
    """``(2,)`` rms sigma_x, sigma_y [m] of tracked particles (survivors)."""
    values = observables.compute_survivors(final, ["sigma_x", "sigma_y"],
                                           scenario.reference_particle)
    return np.array([values["sigma_x"], values["sigma_y"]])


def plane_elements(cov: np.ndarray) -> np.ndarray:
    """``(2, 3)`` (s11, s12, s22) of the x and y planes of a 6x6 covariance."""
    return np.array([[cov[0, 0], cov[0, 1], cov[1, 1]], [cov[2, 2], cov[2, 3], cov[3, 3]]])


def make_problem(scenario: Scenario, strengths: np.ndarray, noise: float, noise_seed: int,
                 particles: int, measure_particles: int, parameter: str | None = None,
                 ) -> Problem:
    """The measurements: the known beam (seed + 1) tracked by ImpactX at every strength."""
    import time

    name = check_parameter(scenario, parameter or default_parameter(scenario))
    if len(strengths) < 3:
        raise WorkloadError("--strengths: expected at least 3 values (3 unknowns per plane)")
    if scenario.space_charge is not None:
        raise WorkloadError(f"scenario {scenario.name}: the quad scan is a linear problem "
                            "(expected space_charge: null)")
    beam = scenario.beam
    if beam.distribution == "file" or beam.twiss is None or any(
            getattr(beam, form, None) is not None for form in ("rms", "ellipse",
                                                               "sigma_matrix")):
        raise WorkloadError(f"scenario {scenario.name}: beam: expected a generated "
                            "distribution given by 'twiss' (the fits vary its Twiss values)")
    impactx = get_backend("impactx")
    if not impactx.availability().available:
        raise WorkloadError("the measurements are made by ImpactX, which is not installed")
    known = beam.model_copy(update={"seed": beam.seed + 1})
    initial = generate(known, measure_particles)
    _, cov = observables.moments(initial)
    start = time.perf_counter()
    sizes = []
    for value in strengths:
        setting = with_values(scenario, {name: float(value)})
        verdict = impactx.supports(setting)
        if not verdict:
            raise WorkloadError(f"scenario {scenario.name}: ImpactX cannot run it: "
                                f"{verdict.reason}")
        try:
            with impactx.prepare(setting) as prepared:
                sizes.append(sizes_of(prepared.track(initial), scenario))
        except Exception as error:  # noqa: BLE001 - the code's failure, said in one line
            raise WorkloadError(f"{name} = {value:g}: ImpactX failed: "
                                f"{type(error).__name__}: {error}") from None
    elapsed = time.perf_counter() - start
    measured = np.array(sizes)
    rng = np.random.default_rng(noise_seed)
    measured = measured * (1.0 + noise * rng.standard_normal(measured.shape))
    if not np.all(np.isfinite(measured)) or np.any(measured <= 0):
        raise WorkloadError(f"--noise {noise}: the noisy sizes must stay positive")
    return Problem(scenario, name, np.asarray(strengths, float), measured,
                   plane_elements(cov), noise, noise_seed, particles, measure_particles,
                   elapsed)


# --- transfer matrices and the analytic answer ---------------------------------------------

def element_matrix(element, strength: float | None = None) -> np.ndarray:
    """``(2, 2, 2)``: the linear x and y transfer matrices of one element.

    Drift of length L: [[1, L], [0, 1]]; quadrupole of length L and strength k = Kn1
    [1/m^2] (k > 0 focuses x): [[cos wL, sin wL / w], [-w sin wL, cos wL]] with w =
    sqrt(k), its hyperbolic form for k < 0 (Wolski, *Beam Dynamics in High Energy Particle
    Accelerators*, sec. 3.1; ImpactX ``src/elements/Quad.H``, ``Drift.H``); a marker is
    the identity."""
    kind, params = element.kind, element.params
    if kind in ("Marker", "Instrument"):
        return np.stack([np.eye(2), np.eye(2)])
    length = float(params.get("length", 0.0))
    if kind == "Drift":
        m = np.array([[1.0, length], [0.0, 1.0]])
        return np.stack([m, m])
    if kind == "Quadrupole":
        k = float(params.get("Kn1", 0.0)) if strength is None else strength
        return np.stack([_quad_plane(k, length), _quad_plane(-k, length)])
    raise WorkloadError(f"element {element.name} ({kind}): the analytic quad scan models "
                        "Drift, Quadrupole and Marker elements only")


def _quad_plane(k: float, length: float) -> np.ndarray:
    """One plane of a thick quadrupole (see :func:`element_matrix`)."""
    if k == 0.0:
        return np.array([[1.0, length], [0.0, 1.0]])
    w = math.sqrt(abs(k))
    if k > 0:
        c, s = math.cos(w * length), math.sin(w * length)
        return np.array([[c, s / w], [-w * s, c]])
    c, s = math.cosh(w * length), math.sinh(w * length)
    return np.array([[c, s / w], [w * s, c]])


def transfer_matrices(problem: Problem) -> np.ndarray:
    """``(K, 2, 2, 2)``: start-to-screen matrices per setting and plane."""
    owner = problem.parameter.split(".")[0]
    field_name = problem.parameter.split(".")[1]
    if field_name != "Kn1":
        raise WorkloadError(f"--parameter {problem.parameter}: the analytic answer needs a "
                            "quadrupole strength (<quad>.Kn1)")
    out = []
    for value in problem.strengths:
        total = np.stack([np.eye(2), np.eye(2)])
        for element in problem.scenario.elements:
            m = element_matrix(element, float(value) if element.name == owner else None)
            total = m @ total
        out.append(total)
    return np.array(out)


def analytic(problem: Problem) -> np.ndarray:
    """``(2, 3)``: the weighted linear least-squares sigma-matrix elements per plane
    (Minty & Zimmermann sec. 4.2): rows ``[R11^2, 2 R11 R12, R12^2] / sigma_meas^2``,
    right-hand side 1, i.e. the objective of every method."""
    matrices = transfer_matrices(problem)
    out = []
    for plane in range(2):
        r11, r12 = matrices[:, plane, 0, 0], matrices[:, plane, 0, 1]
        rows = np.stack([r11**2, 2 * r11 * r12, r12**2], axis=1)
        weight = 1.0 / problem.measured[:, plane] ** 2
        solution, *_ = np.linalg.lstsq(rows * weight[:, None], np.ones(len(weight)),
                                       rcond=None)
        out.append(solution)
    return np.array(out)


# --- the model beam and the errors -----------------------------------------------------------

def twiss_of(u: np.ndarray) -> dict[str, float]:
    """Twiss values of the fit vector u = (ln beta/beta0, alpha, ln eps/eps0) per plane."""
    out = {}
    for plane, offset in (("x", 0), ("y", 3)):
        out[f"beta_{plane}"] = START[f"beta_{plane}"] * math.exp(u[offset])
        out[f"alpha_{plane}"] = float(u[offset + 1])
        out[f"emittance_{plane}"] = START[f"emittance_{plane}"] * math.exp(u[offset + 2])
    return out


def model_particles(problem: Problem, twiss: dict[str, float]) -> np.ndarray:
    """``(n, 6)``: the scenario's beam sampler (its seed) at the given Twiss values, the
    particles every backend tracks (:func:`harness.model.particles.generate_torch` draws the
    same ones in the differentiable trackers)."""
    beam = problem.scenario.beam
    z = beam_unit_samples(beam, problem.particles)
    factor = beam_cholesky(beam, {f"twiss.{k}": v for k, v in twiss.items()})
    particles = z @ np.asarray(factor, dtype=np.float64).T
    if beam.centroid is not None:
        particles += np.asarray(beam.centroid.vector(), dtype=np.float64)
    return particles


def model_sigma(problem: Problem, twiss: dict[str, float]) -> np.ndarray:
    """``(2, 3)`` sigma-matrix elements of the model beam at ``twiss``."""
    _, cov = observables.moments(model_particles(problem, twiss))
    return plane_elements(cov)


def normalised_errors(sigma: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(2, 3)`` |sigma - reference| of each element over sqrt(ref_ii ref_jj) (the
    off-diagonal element is scaled by the diagonal ones, so 0 correlation is no
    division by zero)."""
    scale = np.stack([reference[:, 0], np.sqrt(reference[:, 0] * reference[:, 2]),
                      reference[:, 2]], axis=1)
    return np.abs(sigma - reference) / scale


def twiss_from_sigma(sigma: np.ndarray) -> dict[str, float]:
    """Emittance [m rad], beta [m], alpha [1] per plane from (s11, s12, s22) (Wolski
    eq. 5.13); NaN where the matrix is not positive definite."""
    out = {}
    for plane, (s11, s12, s22) in zip(("x", "y"), sigma, strict=True):
        det = s11 * s22 - s12**2
        eps = math.sqrt(det) if det > 0 else float("nan")
        out[f"emittance_{plane}"] = eps
        out[f"beta_{plane}"] = s11 / eps if det > 0 else float("nan")
        out[f"alpha_{plane}"] = -s12 / eps if det > 0 else float("nan")
    return out


def error_columns(sigma: np.ndarray, problem: Problem, reference: np.ndarray
                  ) -> dict[str, float]:
    """Per-element normalised errors vs the known beam and vs the analytic answer, and the
    emittance (relative), beta (relative) and alpha (absolute) errors vs the known beam."""
    out: dict[str, float] = {}
    truth_err = normalised_errors(sigma, problem.truth).ravel()
    ref_err = normalised_errors(sigma, reference).ravel()
    for name, a, b in zip(SIGMA_ELEMENTS, truth_err, ref_err, strict=True):
        out[f"err_{name}"] = float(a)
        out[f"dev_analytic_{name}"] = float(b)
    out["max_dev_analytic"] = float(np.max(ref_err))
    out["max_err_truth"] = float(np.max(truth_err))
    got, true = twiss_from_sigma(sigma), twiss_from_sigma(problem.truth)
    for plane in ("x", "y"):
        out[f"err_emittance_{plane}"] = abs(got[f"emittance_{plane}"]
                                            / true[f"emittance_{plane}"] - 1)
        out[f"err_beta_{plane}"] = abs(got[f"beta_{plane}"] / true[f"beta_{plane}"] - 1)
        out[f"err_alpha_{plane}"] = abs(got[f"alpha_{plane}"] - true[f"alpha_{plane}"])
    return out


def objective_from_sizes(problem: Problem, sizes: np.ndarray) -> float:
    """The common objective from model sizes ``(K, 2)`` [m]."""
    r = (sizes / problem.measured) ** 2 - 1.0
    return float(np.sum(r * r))


def start_vector() -> np.ndarray:
    """The fit vector of :data:`START` (zeros)."""
    return np.zeros(6)


def scenario_settings(problem: Problem) -> list[Scenario]:
    """One scenario per scanned strength."""
    return [with_values(problem.scenario, {problem.parameter: float(v)})
            for v in problem.strengths]


__all__ = ["Problem", "WorkloadError", "analytic", "make_problem"]
