"""Xsuite adapter (``xsuite`` 0.67: ``xtrack``, ``xobjects``, ``xfields``): harness lattice ->
``xtrack.Line``, particles in and out.

Coordinates (exact in both directions, any energy). Xsuite's particle coordinates are
x, px, y, py (px = P_x / P0, the same as ImpactX), ``zeta = s - beta0 c t`` and
``ptau = (E - E0) / (P0 c)`` (``xtrack.Particles`` docstring, ``xtrack/particles/
particles.py``). ImpactX's ``t`` = c (t - t_ref) is positive for a late particle and
``pt = -(E - E0) / (P0 c)`` (ImpactX ``ImpactXParticleContainer.H``), so::

    zeta = -beta0 * t        ptau = -pt        (x, px, y, py unchanged)
    t    = -zeta / beta0     pt   = -ptau

``xtrack.Particles`` derives delta, rpp and rvv from ptau exactly. The reference particle is
the scenario's species with ImpactX's rest energy (``mass0`` [eV], ``q0`` [e], ``gamma0``).
Xsuite moves lost particles to the end of its arrays; :meth:`XsuitePrepared.extract` sorts by
``particle_id`` and returns every particle whose ``state`` is not positive as a row of NaN,
as the other adapters do.

Maps per harness element and effective tier (``Element.tier``); "same" means the Xsuite
map is ImpactX's map to round-off (this module's tests, particle by particle), anything
else is a labelled stand-in and the case's model becomes ``stand-in:xsuite(...)``:

===========  ========  ===============================================================  ========
harness      tier      Xsuite elements                                                  vs IX
===========  ========  ===============================================================  ========
linear run   linear    consecutive linear-tier Drift/Quadrupole/SBend/Solenoid/          same
                       Instrument -> one ``FirstOrderTaylorMap`` whose matrix is
                       ``Line.get_R_matrix`` (central differences, Richardson-
                       extrapolated) of their ``expanded`` models (Drift ``expanded``,
                       Quadrupole and Bend ``mat-kick-mat``, linear edges,
                       ``UniformSolenoid(ks=Ksol)``)
Drift        paraxial  ``Drift(model='expanded')`` (= ImpactX ``ChrDrift``)              same
Drift        exact     ``Drift(model='exact')`` (= ``ExactDrift``)                       same
Quadrupole   paraxial  ``Quadrupole(k1=Kn1, model='mat-kick-mat')`` (= ``ChrQuad``)      same
Quadrupole   exact     ``Quadrupole(model='drift-kick-drift-exact', integrator=           stand-in
                       'yoshida-4', num_multipole_kicks=3 * steps)``
SBend        exact     ``Bend(angle, k0=angle/length, model='bend-kick-bend')``,         same
                       linear edges e1, e2 (zero gap)
SBend+Kn1    exact     the same with ``k1``, yoshida-4, ``num_multipole_kicks=3*steps``  stand-in
Sextupole    exact     ``Sextupole(k2=Kn2, model='drift-kick-drift-exact', yoshida-4,    stand-in
                       num_multipole_kicks=3 * steps)``
Multipole    thin      ``Multipole(knl, ksl)`` (MAD-X KNL/KSL, as ImpactX ``Multipole``)  same
RFCavity     thin      none (not translated: see :func:`_rf_cavity`)                    unsupp.
Marker       any       nothing
Instrument   any       a drift of its tier when it has a length, else nothing           as Drift
Aperture     any       ``LimitRect`` / ``LimitEllipse`` (lost particles -> NaN rows)      same
===========  ========  ===============================================================  ========

``steps`` is the element's ``nslice * mapsteps`` (the scenario's ``integrator`` block or an
override), the number of integrator steps ImpactX runs for the same element; Xsuite's
Yoshida-4 step has three kicks, so ``num_multipole_kicks`` counts kicks, not steps (with its
default 0 the exact quadrupole has one kick only). Raising the steps is the convergence sweep
of ``benchmarks/integrator_sweep.py``.

Kernels: Xsuite tracks with C kernels. Serial CPU tracking loads the kernels prebuilt in the
``xsuite`` wheel (``xsuite/lib``; no compilation). An OpenMP context (threads > 1) needs its
own kernel: it is compiled once for every element class this adapter uses into the project
cache ``.cache/xsuite-kernels/`` (``TRACKBENCH_XSUITE_KERNELS`` overrides it; one compile per
machine, xsuite version and tracker configuration, under a file lock; ``python -m
backends.xsuite`` does it ahead, as the set-up does) and found there by Xsuite's own
prebuilt-kernel lookup (``xsuite.get_suitable_kernel``) in every later process.
If compilation fails the case runs serially on 1 thread and says why (``compile_error``).
Xsuite offers no compile flags at run time (``xobjects`` builds every kernel with ``-O3``
and xtrack's tracker passes no others), so a ``fast`` math case is refused with that reason.
The prebuilt configuration keeps Xsuite's global aperture ``XTRACK_GLOBAL_XY_LIMIT`` = 1 m
(a particle with |x| or |y| > 1 m is stopped), far outside every beam of the scenarios. Only a
particle stopped at a ``LimitRect`` / ``LimitEllipse`` (a scenario ``Aperture``) is ``lost``;
one stopped anywhere else (the global aperture, a non-finite coordinate) is a blow-up
(:func:`backends.base.final_particles`).

Threads: ``OMP_NUM_THREADS`` when set (the runner sets it for ``--threads``), else all CPUs.
Space charge: not translated (xfields' grid is fixed in the lab, see
:func:`space_charge_support`). Gradients: none by AD;
``trackbench grad`` differentiates Xsuite by finite differences.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from backends.base import Prepared, Unsupported, field_table, final_particles, int_order_note
from backends.translation import (
    LineBackend,
    Translation,
    aperture_limits,
    kicker_translator,
    padded_multipoles,
)

if TYPE_CHECKING:
    from harness.model.lattice import Element
    from harness.model.scenario import Scenario

#: Where the OpenMP kernels are compiled to (see the module docstring).
KERNEL_DIR_VARIABLE = "TRACKBENCH_XSUITE_KERNELS"
DEFAULT_KERNEL_DIR = Path(__file__).resolve().parent.parent / ".cache" / "xsuite-kernels"

#: Kicks of one Yoshida fourth-order step (Xsuite counts kicks in ``num_multipole_kicks``).
KICKS_PER_STEP = 3


# --------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class ElementSpec:
    """One Xsuite element to build: class name in ``xtrack`` and its keyword arguments.

    ``linearise`` marks an element of a linear-tier run that is fused with its neighbours
    into one ``FirstOrderTaylorMap``."""

    cls: str
    kwargs: dict[str, Any]
    linearise: bool = False

    def build(self) -> Any:
        import xtrack as xt

        return getattr(xt, self.cls)(**self.kwargs)


def _steps(element: Element) -> int:
    return element.integrator_steps


def _drift_spec(length: float, tier: str) -> ElementSpec:
    model = "exact" if tier == "exact" else "expanded"
    return ElementSpec("Drift", {"length": length, "model": model}, tier == "linear")


def _drift(element: Element) -> Translation:
    """Drift: ``expanded`` (ImpactX ``ChrDrift``) or ``exact`` (``ExactDrift``)."""
    return Translation((_drift_spec(element.length, element.tier),))


def _instrument(element: Element) -> Translation:
    """A monitor: the drift of its tier when it has a length, else nothing."""
    return _drift(element) if element.length != 0.0 else Translation(())


def _marker(element: Element) -> Translation:
    return Translation(())


def _quadrupole(element: Element) -> Translation:
    """``k1`` = Kn1 [1/m^2] (MAD-X K1, the same as ImpactX ``k``)."""
    kwargs: dict[str, Any] = {"length": element.length, "k1": float(element.params["Kn1"])}
    if element.tier != "exact":
        kwargs["model"] = "mat-kick-mat"
        return Translation((ElementSpec("Quadrupole", kwargs, element.tier == "linear"),))
    return _integrated("Quadrupole", kwargs, element, "ExactQuad", "drift-kick-drift-exact")


def _sbend(element: Element) -> Translation:
    """Sector bend: ``angle`` [rad], ``k0 = h = angle / length``, linear pole-face edges
    ``e1``/``e2`` with zero fringe gap (ImpactX ``DipEdge`` linear, ``g = 0``)."""
    p = element.params
    length, angle = element.length, float(p["angle"])
    k1 = float(p.get("Kn1", 0.0))
    linear = element.tier == "linear"
    if angle == 0.0:
        if "Kn1" in p:
            return _quadrupole(element)
        return _drift(element)
    kwargs: dict[str, Any] = {
        "length": length, "angle": angle, "k0": angle / length, "k1": k1,
        "edge_entry_angle": float(p.get("e1", 0.0)), "edge_exit_angle": float(p.get("e2", 0.0)),
        "edge_entry_model": "linear", "edge_exit_model": "linear",
        "edge_entry_hgap": 0.0, "edge_exit_hgap": 0.0,
        "edge_entry_fint": 0.0, "edge_exit_fint": 0.0,
    }
    if linear:
        return Translation((ElementSpec("Bend", kwargs | {"model": "mat-kick-mat"}, True),))
    if k1 == 0.0:
        return Translation((ElementSpec("Bend", kwargs | {"model": "bend-kick-bend",
                                                          "num_multipole_kicks": 0}),))
    return _integrated("Bend", kwargs, element, "ExactCFbend", "bend-kick-bend")


def _sextupole(element: Element) -> Translation:
    """``k2`` = Kn2 [1/m^3]; ImpactX runs ``ExactMultipole`` (exact tier only)."""
    kwargs = {"length": element.length, "k2": float(element.params["Kn2"])}
    return _integrated("Sextupole", kwargs, element, "ExactMultipole",
                       "drift-kick-drift-exact")


def _integrated(cls: str, kwargs: dict[str, Any], element: Element, impactx: str,
                model: str) -> Translation:
    """xtrack ``cls`` integrated by Xsuite's ``model`` with Yoshida-4 steps
    (:data:`KICKS_PER_STEP` kicks per step, ``nslice * mapsteps`` steps): the stand-in for
    ImpactX's integrated ``impactx`` element."""
    steps = _steps(element)
    kwargs = kwargs | {"model": model, "integrator": "yoshida-4",
                       "num_multipole_kicks": KICKS_PER_STEP * steps}
    return Translation((ElementSpec(cls, kwargs),),
                       f"{impactx}{int_order_note(element)}->{model} yoshida-4 x{steps}")


def _multipole(element: Element) -> Translation:
    """Thin kick: Xsuite ``Multipole(knl, ksl)`` with knl[N] = KnNL, ksl[N] = KsNL (both MAD-X
    conventions, Delta px - i Delta py = -sum (knl + i ksl)(x + i y)^N / N!, as ImpactX
    ``Multipole``)."""
    knl, ksl = padded_multipoles(element.params)
    if not knl:
        return Translation(())
    return Translation((ElementSpec("Multipole", {"knl": knl, "ksl": ksl, "length": 0.0}),))


#: A steering kick, thin or between two drift halves (:func:`kicker_translator`).
_kicker = kicker_translator(_multipole, _drift)


def _solenoid(element: Element) -> Translation:
    """``ks`` = Ksol = B_s / (B rho) [1/m] (ImpactX ``Sol`` ``ks``); linear tier only."""
    return Translation((ElementSpec("UniformSolenoid", {
        "length": element.length, "ks": float(element.params["Ksol"])}, True),))


def _aperture(element: Element) -> Translation:
    """``LimitRect(+-x_limit, +-y_limit)`` or ``LimitEllipse(a=x_limit, b=y_limit)``."""
    a, b, elliptical = aperture_limits(element.params)
    if elliptical:
        return Translation((ElementSpec("LimitEllipse", {"a": a, "b": b}),))
    return Translation((ElementSpec("LimitRect", {"min_x": -a, "max_x": a,
                                                  "min_y": -b, "max_y": b}),))


def _rf_cavity(element: Element) -> Unsupported:
    """ImpactX ``ShortRF`` accelerates the reference particle too (its energy changes in the
    gap and the momenta are rescaled to the new reference); Xsuite's thin ``Cavity`` changes
    the particles' energies only (a ``ReferenceEnergyIncrease`` would have to follow), with
    a sine phase convention (``lag`` 90 degrees on crest): not translated."""
    return Unsupported(
        f"the Xsuite adapter does not translate RFCavity {element.name} (a short RF gap): "
        "ImpactX ShortRF also accelerates the reference particle, Xsuite's thin Cavity does not "
        "(its reference-energy change and phase convention are not mapped)")


def _nonlinear_lens(element: Element) -> Translation:
    """ImpactX's ``NonlinearLens`` (``src/elements/NonlinearLens.H``, the Danilov-Nagaitsev
    thin lens): Xsuite ``NonLinearLens(knll, cnll)``, the same kick (measured,
    ``tests/test_extension_kinds.py``)."""
    p = element.params
    return Translation((ElementSpec("NonLinearLens", {"knll": float(p["knll"]),
                                                      "cnll": float(p["cnll"])}),))


def _thin_dipole(element: Element) -> Translation:
    """ImpactX's ``ThinDipole`` of angle theta and radius rc (``src/elements/ThinDipole.H``,
    Ripken and Schmidt's thin dipole with its curvature terms): Xsuite ``Multipole(knl=
    [theta], hxl=theta, length=theta rc)``, the same kick (measured,
    ``tests/test_extension_kinds.py``)."""
    theta, rc = float(element.params["angle"]), float(element.params["rc"])
    return Translation((ElementSpec("Multipole", {"knl": [theta], "hxl": theta,
                                                  "length": theta * rc}),))


def _plane_xy_rot(element: Element) -> Translation:
    """ImpactX's ``PlaneXYRot`` (``src/elements/PlaneXYRot.H``) by phi: Xsuite
    ``SRotation(angle = -phi in degrees)`` (the opposite sign convention; measured,
    ``tests/test_extension_kinds.py``)."""
    return Translation((ElementSpec("SRotation", {
        "angle": -math.degrees(float(element.params["angle"]))}),))


#: Harness kind -> translator. Every kind the adapter runs is one entry here.
TRANSLATORS: dict[str, Callable[[Element], Translation | Unsupported]] = {
    "Drift": _drift, "Instrument": _instrument, "Marker": _marker, "Aperture": _aperture,
    "Quadrupole": _quadrupole, "Sextupole": _sextupole, "Solenoid": _solenoid,
    "SBend": _sbend, "Multipole": _multipole, "Kicker": _kicker,
    "ImpactX.NonlinearLens": _nonlinear_lens, "ImpactX.ThinDipole": _thin_dipole,
    "ImpactX.PlaneXYRot": _plane_xy_rot,
}

#: Element parameters each translator honours (anything else is refused by name); thin
#: multipoles honour every ``KnNL``/``KsNL``.
HONOURED_FIELDS: dict[str, frozenset[str]] = field_table(
    TRANSLATORS, SBend=("Kn1",), Multipole=("Kn*L", "Ks*L"))


#: What xfields has closest to each kind other than 3d, and why it is not the same model
#: (xfields ``SpaceCharge3D``, ``SpaceChargeBiGaussian``).
XFIELDS_STAND_INS: dict[str, str] = {
    "2d": "xfields has no coasting-beam (current) 2D solve; its 2.5D PIC (SpaceCharge3D with "
          "FFTSolver2p5D) is a bunch model on a grid fixed in the lab",
    "2p5d": "xfields' 2.5D PIC (SpaceCharge3D with FFTSolver2p5D: a transverse 2D solve per "
            "longitudinal slice scaled by the line density) is the same idea, but its grid is "
            "fixed in the lab when the line is built and its longitudinal slicing differs "
            "from ImpactX's binned line density (a stand-in at most)",
    "gauss3d": "xfields has no 3D Gaussian field kick (SpaceChargeBiGaussian is transverse "
               "only)",
    "gauss2p5d": "xfields' SpaceChargeBiGaussian (a bi-Gaussian transverse field scaled by a "
                 "line density) is the transverse Gauss2p5D idea, but with frozen moments "
                 "unless set to update, a given (not binned) line density and no "
                 "longitudinal kick (a stand-in at most)",
}


def space_charge_support(scenario: Scenario) -> Unsupported | None:
    """Why the scenario's space charge is not run (None without space charge).

    xfields offers a 3D space-charge kick (``SpaceCharge3D`` with ``FFTSolver3D``: an
    integrated-Green-function FFT solver on a doubled grid, trilinear deposition and
    interpolation, fields in the beam frame from ``gamma0``), which matches the scenario's
    ``3d`` model in kind. Its grid, however, is fixed in the lab when the element is built
    (``x_range``, ``y_range``, ``z_range``), before the beam reaches it, while the scenario's
    grid follows the beam at each kick (+-``domain_sigmas`` rms sizes; ImpactX follows
    the beam's full extent); a beam that grows along the line (``expanding_beam`` doubles)
    would leave a fixed grid. ``2p5d`` maps onto ``FFTSolver2p5D`` with the same limit."""
    sc = scenario.space_charge
    if sc is None:
        return None
    if sc.kind in XFIELDS_STAND_INS:
        return Unsupported(f"space charge ({sc.kind}): {XFIELDS_STAND_INS[sc.kind]}; not "
                           "translated")
    return Unsupported(
        f"space charge ({sc.kind}): xfields' SpaceCharge3D has a 3D IGF FFT solver, but its "
        "grid is fixed in the lab when the line is built, while the scenario's grid spans "
        "a size set from the beam at each kick (the beam's size along "
        "the line is not known beforehand); not translated")


# --------------------------------------------------------------------------- coordinates


def to_xsuite(particles: np.ndarray, beta0: float) -> dict[str, np.ndarray]:
    """ImpactX ``(N, 6)`` (x, px, y, py, t, pt) -> Xsuite x, px, y, py, zeta, ptau."""
    p = np.asarray(particles, dtype=np.float64)
    return {"x": p[:, 0].copy(), "px": p[:, 1].copy(), "y": p[:, 2].copy(),
            "py": p[:, 3].copy(), "zeta": -beta0 * p[:, 4], "ptau": -p[:, 5]}


def from_xsuite(x, px, y, py, zeta, ptau, beta0: float) -> np.ndarray:
    """Xsuite coordinates -> ImpactX ``(N, 6)`` (x, px, y, py, t, pt)."""
    return np.stack([x, px, y, py, -np.asarray(zeta) / beta0, -np.asarray(ptau)], axis=1)


# --------------------------------------------------------------------------- kernels


def tracking_threads() -> int:
    """Threads Xsuite tracks with: ``OMP_NUM_THREADS`` when set, else every CPU."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


def kernel_dir() -> Path:
    """The project's cache of OpenMP kernels."""
    return Path(os.environ.get(KERNEL_DIR_VARIABLE) or DEFAULT_KERNEL_DIR)


#: Every xtrack element class this adapter builds (one OpenMP kernel serves them all).
KERNEL_CLASSES: tuple[str, ...] = ("Drift", "Quadrupole", "Bend", "Sextupole", "Multipole",
                                   "UniformSolenoid", "FirstOrderTaylorMap", "LimitRect",
                                   "LimitEllipse", "Marker")


def _kernel_module_name(config: dict) -> str:
    """Name of the OpenMP kernel of :data:`KERNEL_CLASSES` for a tracker configuration
    (``Line.config``) and the installed versions."""
    from xsuite.prebuild_kernels import _current_package_versions

    key = repr((KERNEL_CLASSES, sorted(dict(config).items()),
                sorted(_current_package_versions().items())))
    return f"trackbench_{hashlib.sha1(key.encode()).hexdigest()[:12]}_cpu_openmp"


@contextlib.contextmanager
def _prebuilt_location(location: Path) -> Iterator[None]:
    """Point Xsuite's prebuilt-kernel lookup at ``location`` for the duration."""
    import xsuite
    import xsuite.prebuild_kernels as prebuild

    saved = prebuild.PREBUILT_KERNELS_LOCATION
    prebuild.PREBUILT_KERNELS_LOCATION = xsuite.PREBUILT_KERNELS_LOCATION = location
    try:
        yield
    finally:
        prebuild.PREBUILT_KERNELS_LOCATION = xsuite.PREBUILT_KERNELS_LOCATION = saved


def ensure_openmp_kernel(context: Any, config: Any) -> float:
    """Compile the OpenMP kernel of :data:`KERNEL_CLASSES` for the tracker configuration
    ``config`` (a line's ``xtrack.tracker.TrackerConfig``) into :func:`kernel_dir` unless it
    is there (one process compiles, others wait on the lock); returns the seconds spent."""
    import fcntl

    import xtrack as xt
    from xsuite.prebuild_kernels import _kernel_binary_file, save_kernel_metadata

    location = kernel_dir()
    location.mkdir(parents=True, exist_ok=True)
    module = _kernel_module_name(config)
    metadata = location / f"{module}.json"
    t0 = time.perf_counter()
    with open(location / f"{module}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if metadata.exists() and _kernel_binary_file(module, location).exists():
            return 0.0
        classes = [getattr(xt, name) for name in KERNEL_CLASSES]
        extra = [xt.Particles, xt.ParticlesMonitor, xt.MultiElementMonitor]
        # compiled from inside the cache: the C build runs setuptools, which would
        # otherwise read the pyproject.toml of the working directory
        with contextlib.chdir(location):
            info = xt.Tracker._compile_kernel_from_classes(
                context=context, config=config, tracker_element_classes=classes,
                extra_classes=extra, module_name=module, containing_dir=location,
                compile="force")
        # registered under Xsuite's own kernel family so that its lookup accepts it
        save_kernel_metadata(module_name=module, base_module_name="default_base_config",
                             context_key="openmp", config=config,
                             tracker_element_classes=info["tracker_element_classes"],
                             all_classes=info["all_classes"], location=location)
    return time.perf_counter() - t0


def cached_kernel_or_raise(line: Any, context: Any) -> dict:
    """The cached kernel Xsuite's lookup finds for ``line`` on ``context`` (call with the
    lookup pointed at :func:`kernel_dir`); raises instead of letting ``build_tracker``
    compile a kernel of its own in the working directory."""
    import xtrack as xt
    from xsuite import get_suitable_kernel

    classes = list(dict.fromkeys(type(line.element_dict[name])._XoStruct
                                 for name in line.element_names))
    found = get_suitable_kernel(config=line.config, tracker_element_classes=classes,
                                classes=[xt.ParticlesMonitor._XoStruct], context=context,
                                verbose=False)
    if not found:
        raise RuntimeError(f"no cached OpenMP kernel in {kernel_dir()} serves this line")
    return found


_CONTEXTS: dict[int, Any] = {}


def context_for(threads: int) -> Any:
    """The process's xobjects CPU context for a thread count (0/1: serial)."""
    import xobjects as xo

    key = threads if threads > 1 else 0
    if key not in _CONTEXTS:
        _CONTEXTS[key] = xo.ContextCpu(omp_num_threads=key)
    return _CONTEXTS[key]


# --------------------------------------------------------------------------- line


def _reference_particles(reference, context: Any = None, **coordinates) -> Any:
    import xtrack as xt

    kwargs = {} if context is None else {"_context": context}
    return xt.Particles(mass0=reference.mass_eV, q0=reference.charge_qe,
                        gamma0=reference.gamma, **kwargs, **coordinates)


#: Central-difference steps of :func:`linear_map` (x, px, y, py, zeta [m], delta): 1000x
#: Xsuite's defaults. With the Richardson combination the truncation error is fourth order
#: in the step, so large steps keep round-off small; measured against ImpactX's linear maps
#: (10^4 particles): chicane 4e-11 of sigma (dispersion_px 4e-11 relative), fodo_linear 3e-12,
#: against 2.6e-9 (dispersion_px 1e-7) with Xsuite's default steps and no extrapolation.
R_MATRIX_STEPS: dict[str, float] = {"dx": 1e-3, "dpx": 1e-4, "dy": 1e-3, "dpy": 1e-4,
                                    "dzeta": 1e-2, "ddelta": 1e-3}


def linear_map(specs: list[ElementSpec], reference) -> Any:
    """One ``FirstOrderTaylorMap`` equal to the linearisation of ``specs`` (their expanded
    models) at the reference orbit.

    The matrix is Xsuite's central-difference ``Line.get_R_matrix`` at the steps ``h`` of
    :data:`R_MATRIX_STEPS` and ``2 h``, combined by Richardson extrapolation,
    ``R = (4 R(h) - R(2 h)) / 3`` (the h^2 error term cancels). ``get_R_matrix`` works in
    (x, px, y, py, zeta, pzeta = ptau / beta0) and the Taylor map in (x, px, y, py,
    tau = zeta / beta0, ptau): m1 = D R D^-1 with D = diag(1, 1, 1, 1, 1/beta0, beta0)."""
    import xtrack as xt

    line = xt.Line(elements=[s.build() for s in specs],
                   element_names=[f"e{i}" for i in range(len(specs))])
    line.particle_ref = _reference_particles(reference)
    line.build_tracker(_context=context_for(1))

    def r_matrix(factor: float) -> np.ndarray:
        steps = {key: factor * value for key, value in R_MATRIX_STEPS.items()}
        return np.asarray(line.get_R_matrix(particle_on_co=line.particle_ref.copy(),
                                            steps=steps)["R_matrix"])

    r = (4.0 * r_matrix(1.0) - r_matrix(2.0)) / 3.0
    beta0 = reference.beta
    d = np.diag([1.0, 1.0, 1.0, 1.0, 1.0 / beta0, beta0])
    m1 = d @ r @ np.linalg.inv(d)
    length = float(sum(s.kwargs.get("length", 0.0) for s in specs))
    return xt.FirstOrderTaylorMap(length=length, m0=np.zeros(6), m1=m1)


def build_line(scenario: Scenario, specs: list[tuple[str, ElementSpec]]) -> Any:
    """The ``xtrack.Line`` of translated specs; runs of linear-tier elements become one
    Taylor map each."""
    import xtrack as xt

    reference = scenario.reference_particle
    elements: list[Any] = []
    names: list[str] = []
    run: list[ElementSpec] = []
    run_names: list[str] = []

    def flush() -> None:
        if run:
            elements.append(linear_map(list(run), reference))
            names.append("+".join(run_names))
            run.clear()
            run_names.clear()

    for name, spec in specs:
        if spec.linearise:
            run.append(spec)
            run_names.append(name)
            continue
        flush()
        elements.append(spec.build())
        names.append(name)
    flush()
    if not elements:
        elements, names = [xt.Marker()], ["start"]
    line = xt.Line(elements=elements, element_names=names)
    line.particle_ref = _reference_particles(reference)
    return line


# --------------------------------------------------------------------------- prepared


@dataclass
class _Handle:
    particles: Any
    n: int


class XsuitePrepared(Prepared):
    """A scenario as an ``xtrack.Line``; its tracker is built on a CPU context by the first
    :meth:`inject` (the harness's untimed warm-up), like other codes' compilation.

    Attributes:
        compiled: True (Xsuite always tracks compiled C kernels).
        compile_s: seconds spent building the tracker: loading the prebuilt serial or the
            cached OpenMP kernel, or compiling the OpenMP kernel on its first use on a
            machine; 0.0 until the first :meth:`inject`.
        compile_error: why the OpenMP kernel could not be used (then 1 thread), else "".
        threads: the threads tracking uses (the wanted count until the tracker is built).
    """

    def __init__(self, scenario: Scenario, specs: list[tuple[str, ElementSpec]], model: str):
        self.scenario = scenario
        self.model = model
        self.reference = scenario.reference_particle
        self.beta0 = self.reference.beta
        self.line = build_line(scenario, specs)
        self.compiled: bool | None = True
        self.threads = tracking_threads()
        self.context: Any = None

    def _ensure_tracker(self) -> None:
        if self.context is not None:
            return
        t0 = time.perf_counter()
        self.threads = self._build_tracker(self.threads)
        self.compile_s = time.perf_counter() - t0
        self.context = context_for(self.threads)

    def _build_tracker(self, threads: int) -> int:
        if threads <= 1:
            self.line.build_tracker(_context=context_for(1))
            return 1
        context = context_for(threads)
        try:
            ensure_openmp_kernel(context, self.line.config)
            with _prebuilt_location(kernel_dir()):
                cached_kernel_or_raise(self.line, context)
                self.line.build_tracker(_context=context)
            return threads
        except Exception as error:  # noqa: BLE001 - e.g. no C compiler: track serially
            self.compile_error = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            if self.line.tracker is not None:
                self.line.discard_tracker()
            self.line.build_tracker(_context=context_for(1))
            return 1

    def inject(self, particles: np.ndarray) -> _Handle:
        particles = np.asarray(particles, dtype=np.float64)
        if particles.ndim != 2 or particles.shape[1] != 6:
            raise ValueError(f"particles must have shape (N, 6), got {particles.shape}")
        self._ensure_tracker()
        coords = to_xsuite(particles, self.beta0)
        p = _reference_particles(self.reference, self.context, **coords)
        return _Handle(p, len(particles))

    def run(self, handle: _Handle) -> _Handle:
        self.line.track(handle.particles)
        return handle

    def extract(self, handle: _Handle) -> np.ndarray:
        """Final particles in injection order (by ``particle_id``); those lost at an aperture
        are NaN rows, those stopped elsewhere blow-ups (see the module docstring)."""
        p = handle.particles
        ctx = self.context

        def get(name: str) -> np.ndarray:
            return np.asarray(ctx.nparray_from_context_array(getattr(p, name)))

        ids = get("particle_id")
        state = get("state")
        columns = from_xsuite(get("x"), get("px"), get("y"), get("py"), get("zeta"),
                              get("ptau"), self.beta0)
        keep = (ids >= 0) & (ids < handle.n)
        ids, state, columns = ids[keep], state[keep], columns[keep]
        apertures = self.aperture_indices()
        at_aperture = apertures[np.clip(get("at_element")[keep], 0, len(apertures) - 1)]
        raw = np.full((handle.n, 6), np.nan)
        raw[ids] = columns
        lost = np.zeros(handle.n, bool)
        stopped = np.zeros(handle.n, bool)
        lost[ids] = (state <= 0) & at_aperture
        stopped[ids] = (state <= 0) & ~at_aperture
        return final_particles(raw, lost=lost, stopped=stopped)

    def aperture_indices(self) -> np.ndarray:
        """Boolean mask over the line's elements (one extra False past the end): True at the
        ``LimitRect`` / ``LimitEllipse`` elements that translate scenario apertures."""
        kinds = [type(self.line.element_dict[name]).__name__  # line.elements are views
                 for name in self.line.element_names]
        return np.array([kind in ("LimitRect", "LimitEllipse") for kind in kinds] + [False])


# --------------------------------------------------------------------------- the backend


class XsuiteBackend(LineBackend):
    """Xsuite (CERN): xtrack's C kernels on the CPU."""

    name: ClassVar[str] = "xsuite"
    distribution: ClassVar[str] = "xsuite"
    install_hint: ClassVar[str] = "pip install 'trackbench[xsuite]'"
    honoured_fields: ClassVar[Mapping[str, frozenset[str]] | None] = HONOURED_FIELDS
    envelope_refusal: ClassVar[str] = (
        "Xsuite has no propagation of a given 6x6 beam covariance: its twiss carries "
        "optics functions from a TwissInit (eigenvectors of a periodic or given optics) "
        "and builds beam sizes from them and emittances, a different parametrisation that "
        "cannot hold an arbitrary coupled covariance; not run as envelope tracking")
    translators: ClassVar[Mapping[str, Callable[..., Any]]] = TRANSLATORS
    refused_kinds: ClassVar[Mapping[str, Callable[..., Any]]] = {"RFCavity": _rf_cavity}
    #: Xsuite tracks spins (``Line.configure_spin``), but its spin model has not been
    #: compared with ImpactX's map by map here, so spin scenarios are refused by name.
    spin_refusal: ClassVar[str] = (
        "Xsuite's spin tracking (Line.configure_spin) is not wired: its spin model has not "
        "been compared map by map with ImpactX's")
    linear_note: ClassVar[str] = (
        "linear maps: Xsuite FirstOrderTaylorMap from Line.get_R_matrix (central differences "
        "of the expanded models, Richardson-extrapolated)")
    #: The Xsuite line of a plan's specs.
    prepared_class = XsuitePrepared
    #: No fast-math setting at run time (see the module docstring, Kernels).
    math_refusal: ClassVar[str] = (
        "Xsuite has no run-time compile-flag setting: xtrack builds its element kernels "
        "with fixed flags (xobjects ContextCpu.build_kernels: -O3; xtrack.Tracker passes no "
        "extra compile arguments), and its tracking runs the kernels prebuilt in the "
        "xsuite wheel (serial) or the one OpenMP kernel of every element class (13 MB); a "
        "fast-math Xsuite would be a recompilation of that whole kernel outside Xsuite's "
        "API, not a setting of the code")

    @classmethod
    def _import(cls) -> None:
        import xobjects  # noqa: F401
        import xsuite  # noqa: F401
        import xtrack  # noqa: F401

    @classmethod
    def dependency_versions(cls) -> dict[str, str]:
        from backends.base import package_version

        out = {}
        for dist in ("xsuite", "xtrack", "xobjects", "xpart", "xfields", "numpy"):
            version = package_version(dist)
            if version:
                out[dist] = version
        return out

    def extra_checks(self, scenario: Scenario) -> Unsupported | None:
        """Space charge (:func:`space_charge_support`)."""
        return space_charge_support(scenario)


def prebuild_openmp_kernel() -> str:
    """Compile the OpenMP kernel into :func:`kernel_dir` now (the set-up does, so that the
    first multi-threaded case does not pay it); returns a one-line report, never raises."""
    try:
        import xtrack as xt

        line = xt.Line(elements=[xt.Marker()], element_names=["m"])
        seconds = ensure_openmp_kernel(context_for(max(2, tracking_threads())), line.config)
    except Exception as error:  # noqa: BLE001 - the serial prebuilt kernels still work
        return (f"xsuite OpenMP kernel not built ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); Xsuite tracks on 1 thread")
    if seconds == 0.0:
        return f"xsuite OpenMP kernel already in {kernel_dir()}"
    return f"xsuite OpenMP kernel compiled into {kernel_dir()} in {seconds:.0f} s"


#: One element, and the whole line, through the adapter's translators (or why not).
translate = XsuiteBackend.translate
translate_scenario = XsuiteBackend.translate_scenario

#: Registered by :mod:`backends.registry`.
BACKEND = XsuiteBackend


if __name__ == "__main__":
    print(prebuild_openmp_kernel())
