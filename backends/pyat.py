"""pyAT adapter (``accelerator-toolbox`` 0.9): harness lattice -> ``at.Lattice``, particles in
and out.

Coordinates. AT tracks the columns of a Fortran-ordered ``(6, N)`` array
``(x, px, y, py, delta, ct)`` (AT's "6D coordinates", ``at.tracking``): x, px, y, py as
ImpactX, ``delta = (P - P0) / P0`` and ``ct`` the path lengthening [m], positive for a
particle behind the reference (the opposite sign of Xsuite's ``zeta``). With ImpactX's
``t`` = c (t - t_ref) and ``pt = -(E - E0) / (P0 c)`` (ImpactX ``ImpactXParticleContainer.H``;
delta from pt as in ImpactX ``ChrQuad.H``)::

    delta = sqrt(1 - 2 pt / beta0 + pt^2) - 1      ct = beta0 * t
    pt    = -(sqrt((1 + delta)^2 + 1 / (beta0 gamma0)^2) - 1 / beta0)      t = ct / beta0

(exact both ways: the energy of a particle of momentum P0 (1 + delta) is
E / (P0 c) = sqrt((1 + delta)^2 + 1 / (beta0 gamma0)^2); a path lengthening dL at the
reference speed is a delay c dt = dL / beta0.)

Model. AT's integrators move every particle at the speed of light (no velocity slip: ``ct``
changes by the path lengthening only, AT's "ultra-relativistic" assumption, whose warning
pyAT prints for a massive particle), so the longitudinal coordinate of every AT map differs
from ImpactX's by about L (1/beta - 1/beta0) per element: every pyAT row is a stand-in
labelled ``stand-in:pyat(beta=1 ...)``. The transverse coordinates of the maps below equal
ImpactX's to round-off (tests, particle by particle).

=============  ==========  ===========================================================
harness kind   tier        AT element (pass method)
=============  ==========  ===========================================================
linear-tier    linear      every Drift/Quadrupole/SBend/Solenoid/Instrument as
                           ``Matrix66Pass`` with ``M66 = at.find_elem_m66`` of its
                           linear pass method (``DriftPass``, ``QuadLinearPass``,
                           ``BendLinearPass``, ``SolenoidLinearPass``)
Drift          paraxial    ``Drift`` (``DriftPass``, expanded) = ImpactX ``ChrDrift``
Drift          exact       ``Drift`` (``ExactDriftPass``)
Quadrupole     paraxial    ``Quadrupole(k=Kn1)`` (``StrMPoleSymplectic4Pass``, steps;
                           ``QuadLinearPass`` is not used: in AT 0.9 its path lengthening
                           has the wrong sign for K < 0)
Quadrupole     exact       ``Quadrupole`` (``ExactMultipolePass``, steps)
SBend          exact       ``Dipole(angle, k=Kn1, EntranceAngle=e1, ExitAngle=e2)``
                           (``BndMPoleSymplectic4Pass``, zero gap: linear edges; steps);
                           at the linear tier the same element with ``BendLinearPass``
Sextupole      exact       ``Sextupole(h = Kn2 / 2)`` (AT ``PolynomB[2] = K2 / 2``;
                           ``ExactMultipolePass``, steps)
Octupole       exact       ``Octupole(PolynomB[3] = Kn3 / 3!)`` (``ExactMultipolePass``,
                           steps)
Multipole      thin        ``ThinMultipole(PolynomB[N] = KnNL / N!, PolynomA[N] = KsNL / N!)``
Solenoid       linear      ``SolenoidLinearPass`` with ``K = Ksol`` -> ``Matrix66Pass``
Marker         any         nothing
Aperture       any         ``Marker`` with ``RApertures`` / ``EApertures`` (lost -> NaN)
RFCavity       thin        not translated (see :func:`_rf_cavity`)
=============  ==========  ===========================================================

``steps`` (``NumIntSteps``) is the element's ``nslice * mapsteps``: AT's fourth-order
symplectic step, the same count as Xsuite's Yoshida-4 steps. AT stops a particle at an
aperture marker or at its own amplitude limit (|x| or |y| > 1 m, or a non-finite coordinate)
and keeps the order; the adapter asks AT where (``losses=True``, only when the lattice has
apertures): a stop at an aperture is a loss (a NaN row), any other a blow-up
(:func:`backends.base.final_particles`). pyAT's wheel is not
built with OpenMP: it tracks on 1 thread. Space charge: AT has none. Gradients: finite
differences (``trackbench grad``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    from harness.model.reference_particle import ReferenceParticle
    from harness.model.scenario import Scenario

#: What every pyAT row stands in for (AT moves every particle at c).
BETA_ONE = "beta=1: no velocity slip"

@dataclass(frozen=True)
class ElementSpec:
    """One AT element to build: class name in ``at`` (or ``Element``), positional
    arguments after the name, keyword attributes; ``linearise`` replaces it by its
    ``find_elem_m66`` matrix (``Matrix66Pass``)."""

    cls: str
    args: tuple
    kwargs: dict[str, Any]
    linearise: bool = False

    def build(self, name: str) -> Any:
        import at

        element = getattr(at, self.cls)(name, *self.args, **self.kwargs)
        if not self.linearise:
            return element
        m66 = np.asarray(at.find_elem_m66(element))
        return at.M66(name, m66=m66, Length=float(getattr(element, "Length", 0.0)))


def _drift(element: Element) -> Translation:
    tier = element.tier
    method = "ExactDriftPass" if tier == "exact" else "DriftPass"
    return Translation((ElementSpec("Drift", (element.length,), {"PassMethod": method},
                                    tier == "linear"),))


def _instrument(element: Element) -> Translation:
    return _drift(element) if element.length != 0.0 else Translation(())


def _marker(element: Element) -> Translation:
    return Translation(())


def _quadrupole(element: Element) -> Translation:
    tier, steps = element.tier, element.integrator_steps
    k = float(element.params["Kn1"])
    if tier == "linear":
        # QuadLinearPass: the thick-quadrupole matrices (its wrong path lengthening for
        # K < 0 is quadratic in x, so it does not enter the linear map)
        return Translation((ElementSpec("Quadrupole", (element.length, k),
                                        {"PassMethod": "QuadLinearPass"}, True),))
    if tier == "paraxial":
        return Translation((ElementSpec("Quadrupole", (element.length, k), {
            "PassMethod": "StrMPoleSymplectic4Pass", "NumIntSteps": steps}),),
            f"ChrQuad->StrMPoleSymplectic4Pass x{steps}")
    return Translation((ElementSpec("Quadrupole", (element.length, k), {
        "PassMethod": "ExactMultipolePass", "NumIntSteps": steps}),),
        f"ExactQuad{int_order_note(element)}->ExactMultipolePass x{steps}")


def _sbend(element: Element) -> Translation:
    """Sector bend with linear pole-face edges (``FullGap = 0``: edge focusing
    tan(e)/rho only, as ImpactX ``DipEdge`` with ``g = 0``)."""
    p = element.params
    steps = element.integrator_steps
    k1 = float(p.get("Kn1", 0.0))
    kwargs = {"EntranceAngle": float(p.get("e1", 0.0)), "ExitAngle": float(p.get("e2", 0.0)),
              "FullGap": 0.0, "FringeInt1": 0.0, "FringeInt2": 0.0,
              "PassMethod": "BndMPoleSymplectic4Pass", "NumIntSteps": steps}
    if element.tier == "linear":
        kwargs = {**kwargs, "PassMethod": "BendLinearPass"}
        return Translation((ElementSpec("Dipole", (element.length, float(p["angle"]), k1),
                                        kwargs, True),))
    spec = ElementSpec("Dipole", (element.length, float(p["angle"]), k1), kwargs)
    return Translation((spec,), f"ExactSbend{int_order_note(element)}->BndMPoleSymplectic4Pass "
                       f"x{steps}")


def _octupole(element: Element) -> Translation:
    """AT ``Octupole`` with ``PolynomB[3] = Kn3 / 3!`` (AT's field expansion, see
    :func:`_multipole`), ``ExactMultipolePass``, steps."""
    steps = element.integrator_steps
    return Translation((ElementSpec("Octupole", (
        element.length, [0.0] * 4, [0.0, 0.0, 0.0, float(element.params["Kn3"]) / 6.0]),
        {"PassMethod": "ExactMultipolePass", "NumIntSteps": steps}),),
        f"ExactMultipole{int_order_note(element)}->ExactMultipolePass x{steps}")


def _sextupole(element: Element) -> Translation:
    steps = element.integrator_steps
    return Translation((ElementSpec("Sextupole", (element.length,
                                                  0.5 * float(element.params["Kn2"])),
                                    {"PassMethod": "ExactMultipolePass",
                                     "NumIntSteps": steps}),),
                       f"ExactMultipole{int_order_note(element)}->ExactMultipolePass "
                       f"x{steps}")


def _multipole(element: Element) -> Translation:
    """Thin kick: AT ``PolynomB[N] = KnNL / N!``, ``PolynomA[N] = KsNL / N!`` (AT's field
    expansion B_y + i B_x = B rho sum (PolynomB + i PolynomA)(x + i y)^N)."""
    normal, skew = padded_multipoles(element.params)
    if not normal:
        return Translation(())
    poly_b = [k / math.factorial(n) for n, k in enumerate(normal)]
    poly_a = [k / math.factorial(n) for n, k in enumerate(skew)]
    return Translation((ElementSpec("ThinMultipole", (poly_a, poly_b), {}),))


#: A steering kick, thin or between two drift halves (:func:`kicker_translator`).
_kicker = kicker_translator(_multipole, _drift)


def _solenoid(element: Element) -> Translation:
    """AT ``SolenoidLinearPass`` with ``K`` = Ksol = B_s / (B rho) [1/m] (measured: its
    ``find_elem_m66`` equals ImpactX ``Sol(ks=Ksol)`` to round-off; K = Ksol / 2 does not)."""
    return Translation((ElementSpec("Element", (), {
        "Length": element.length, "K": float(element.params["Ksol"]),
        "PassMethod": "SolenoidLinearPass"}, True),))


def _aperture(element: Element) -> Translation:
    a, b, elliptical = aperture_limits(element.params)
    if elliptical:
        return Translation((ElementSpec("Marker", (), {"EApertures": [a, b]}),))
    return Translation((ElementSpec("Marker", (), {"RApertures": [-a, a, -b, b]}),))


def _rf_cavity(element: Element) -> Unsupported:
    """ImpactX ``ShortRF`` accelerates the reference particle as well; AT's
    ``RFCavityPass`` changes the particles' delta only (a ring's RF, with the reference
    energy fixed, phase from ``TimeLag`` and the harmonic number): not translated."""
    return Unsupported(
        f"the pyAT adapter does not translate RFCavity {element.name} (a short RF gap): "
        "ImpactX ShortRF also accelerates the reference particle, AT's RFCavityPass keeps the "
        "reference energy fixed (and moves particles at c)")


#: Harness kind -> translator.
TRANSLATORS: dict[str, Callable[[Element], Translation]] = {
    "Drift": _drift,
    "Quadrupole": _quadrupole,
    "SBend": _sbend,
    "Sextupole": _sextupole,
    "Octupole": _octupole,
    "Multipole": _multipole,
    "Solenoid": _solenoid,
    "Marker": _marker,
    "Instrument": _instrument,
    "Aperture": _aperture,
    "Kicker": _kicker,
}

#: Element parameters each translator honours (thin multipoles: every KnNL/KsNL).
HONOURED_FIELDS: dict[str, frozenset[str]] = field_table(
    TRANSLATORS, SBend=("Kn1",), Multipole=("Kn*L", "Ks*L"))


# --------------------------------------------------------------------------- coordinates


def to_at(particles: np.ndarray, reference: ReferenceParticle) -> np.ndarray:
    """ImpactX ``(N, 6)`` -> AT's Fortran-ordered ``(6, N)`` (x, px, y, py, delta, ct)."""
    p = np.asarray(particles, dtype=np.float64)
    beta0 = reference.beta
    pt = p[:, 5]
    delta = np.sqrt(1.0 - 2.0 * pt / beta0 + pt * pt) - 1.0
    return np.asfortranarray(np.vstack([p[:, 0], p[:, 1], p[:, 2], p[:, 3], delta,
                                        beta0 * p[:, 4]]))


def from_at(r: np.ndarray, reference: ReferenceParticle) -> np.ndarray:
    """AT ``(6, N)`` -> ImpactX ``(N, 6)`` (x, px, y, py, t, pt)."""
    beta0, bg0 = reference.beta, reference.beta_gamma
    delta = r[4]
    pt = -(np.sqrt((1.0 + delta) ** 2 + 1.0 / bg0**2) - 1.0 / beta0)
    return np.stack([r[0], r[1], r[2], r[3], r[5] / beta0, pt], axis=1)


# --------------------------------------------------------------------------- prepared


def build_lattice(scenario: Scenario, specs: list[tuple[str, ElementSpec]]) -> Any:
    """The ``at.Lattice`` of the translated specs, with ImpactX's rest energy and charge."""
    import warnings

    import at

    reference = scenario.reference_particle
    elements = [spec.build(name) for name, spec in specs] or [at.Marker("start")]
    particle = at.Particle(f"{reference.species}_impactx", rest_energy=reference.mass_eV,
                           charge=reference.charge_qe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return at.Lattice(elements, energy=reference.total_energy_eV, particle=particle,
                          name=scenario.name)


@dataclass(frozen=True)
class _Tracked:
    """AT's tracked ``(6, N)`` coordinates and, with apertures in the lattice, the mask of
    the particles AT stopped at one of them (None without apertures)."""

    coordinates: np.ndarray
    at_aperture: np.ndarray | None


class PyatPrepared(Prepared):
    """A scenario as an ``at.Lattice`` (tracked in place by ``at.lattice_track``)."""

    threads = 1

    def __init__(self, scenario: Scenario, specs: list[tuple[str, ElementSpec]], model: str):
        self.scenario = scenario
        self.reference = scenario.reference_particle
        self.model = model
        self.lattice = build_lattice(scenario, specs)

    def inject(self, particles: np.ndarray) -> np.ndarray:
        particles = np.asarray(particles, dtype=np.float64)
        if particles.ndim != 2 or particles.shape[1] != 6:
            raise ValueError(f"particles must have shape (N, 6), got {particles.shape}")
        return to_at(particles, self.reference)

    def run(self, handle: np.ndarray) -> _Tracked:
        """Track in place; with apertures in the lattice AT also records where each
        particle was stopped (``losses=True``), to tell aperture losses from blow-ups."""
        import warnings

        import at

        apertures = self.aperture_mask()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # "Make sure your particle is ultra-relativistic"
            if not apertures.any():
                at.lattice_track(self.lattice, handle, in_place=True)
                return _Tracked(handle, None)
            *_, data = at.lattice_track(self.lattice, handle, in_place=True, losses=True)
        losses = data["loss_map"]
        element = np.clip(np.asarray(losses["elem"], int), 0, len(apertures) - 1)
        return _Tracked(handle, np.asarray(losses["islost"], bool) & apertures[element])

    def aperture_mask(self) -> np.ndarray:
        """Boolean mask over the lattice's elements: True at the ``Marker``s with
        ``RApertures`` / ``EApertures`` (the scenario's apertures)."""
        return np.array([hasattr(element, "RApertures") or hasattr(element, "EApertures")
                         for element in self.lattice], bool)

    def extract(self, handle: _Tracked | np.ndarray) -> np.ndarray:
        """Final particles in injection order: those AT stopped at an aperture marker are NaN
        rows, those it stopped elsewhere (its 1 m amplitude limit, a non-finite
        coordinate) blow-ups (:func:`backends.base.final_particles`)."""
        tracked = handle if isinstance(handle, _Tracked) else _Tracked(handle, None)
        out = from_at(tracked.coordinates, self.reference)
        stopped = ~np.isfinite(out).all(axis=1)   # AT marks a stopped particle x = NaN
        lost = np.zeros(len(out), bool) if tracked.at_aperture is None else tracked.at_aperture
        return final_particles(out, lost=stopped & lost, stopped=stopped & ~lost)


class PyatBackend(LineBackend):
    """pyAT, the Python Accelerator Toolbox (C pass methods, single-threaded wheel)."""

    name: ClassVar[str] = "pyat"
    distribution: ClassVar[str] = "accelerator-toolbox"
    install_hint: ClassVar[str] = "pip install 'trackbench[pyat]'"
    honoured_fields: ClassVar[Mapping[str, frozenset[str]] | None] = HONOURED_FIELDS
    space_charge_kinds: ClassVar[frozenset[str] | None] = frozenset()
    translators: ClassVar[Mapping[str, Callable[..., Any]]] = TRANSLATORS
    refused_kinds: ClassVar[Mapping[str, Callable[..., Any]]] = {"RFCavity": _rf_cavity}
    described: ClassVar[tuple[str, ...]] = (BETA_ONE,)
    linear_note: ClassVar[str] = "linear maps: Matrix66Pass of at.find_elem_m66"
    always_stand_in: ClassVar[bool] = True
    #: The AT lattice of a plan's specs.
    prepared_class = PyatPrepared

    @classmethod
    def _import(cls) -> None:
        import at  # noqa: F401


#: One element, and the whole line, through the adapter's translators (or why not).
translate = PyatBackend.translate
translate_scenario = PyatBackend.translate_scenario

#: Registered by :mod:`backends.registry`.
BACKEND = PyatBackend
