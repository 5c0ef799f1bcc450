"""Ocelot adapter (``ocelot-collab`` 26.6): harness lattice -> ``ocelot.MagneticLattice``,
particles in and out of an ``ocelot.ParticleArray``.

Coordinates. Ocelot's ``ParticleArray.rparticles`` is a ``(6, N)`` array
``(x, x', y, y', tau, p)`` with (Ocelot tutorial ``demos/ipython_tutorials/2_tracking.ipynb``,
"Coordinates"; docstring of ``ocelot/cpbd/beam/particle.py``)::

    x' = px / p0      y' = py / p0      tau = c t - s / beta0 = c (t - t_ref)
    p  = (E - E0) / (p0 c)

(``tau > 0``: the particle arrives later than the reference). ImpactX's canonical
coordinates are x, px / p0, y, py / p0, ``t = c (t - t_ref)`` and
``pt = -(E - E0) / (p0 c)`` (ImpactX ``ImpactXParticleContainer.H``), so the conversion is
exact, without any reference quantity::

    x' = px      y' = py      tau = t      p = -pt          (and back: pt = -p)

The first-order maps confirm the signs: a drift of length L has ``R56 = -L / (beta0 gamma0)^2``
on ``p`` (``ocelot/cpbd/r_matrix.py`` ``uni_matrix``), i.e. ``tau += L pt / (beta0 gamma0)^2``,
ImpactX's ``Drift.H``.

Reference particle. Ocelot's maps depend on the reference only through
``gamma0 = E / m_e`` (``uni_matrix``, ``t_nnn`` in ``ocelot/cpbd/high_order.py``, the solenoid
matrix of ``ocelot/cpbd/elements/solenoid_atom.py``: ``energy / m_e_GeV``), with the electron
mass wired in; strengths are normalised (``k1 = Kn1`` [1/m^2]). The adapter sets
``ParticleArray.E = gamma0 * m_e_GeV`` (GeV), so Ocelot's gamma0 is the scenario's for any
species (for electrons and positrons E is their total energy).

Model. Ocelot's tracking methods (``ocelot/cpbd/transformations/``): ``TransferMap``, the
first-order matrix (R); ``SecondTM``, the second-order map (R and T); ``KickTM`` (drift-kick,
with beta0 expanded as 1 - 1/(2 gamma0^2)); ``MultipoleTM`` (thin kick); Runge-Kutta
integrators in field maps. ImpactX's linear tier is the first-order map of each element, the
same model as ``TransferMap``: those rows are the scenario's model. The paraxial tier
(``ChrDrift``, ``ChrQuad``: linear transverse optics exact in the energy deviation) and the
exact tier (``ExactDrift``, ``ExactQuad``, ``ExactSbend``, ``ExactMultipole``: exact
Hamiltonians) have no Ocelot method; their elements run ``SecondTM``, the highest-order map
Ocelot has for them, as a labelled stand-in (``stand-in:ocelot(ChrQuad->SecondTM, ...)``,
verdict ``model-mismatch``).

=============  ==========  ===========================================================
harness kind   tier        Ocelot element (method)
=============  ==========  ===========================================================
Drift          linear      ``Drift(l)`` (``TransferMap``)
Drift          para/exact  ``Drift(l)`` (``SecondTM``, stand-in)
Quadrupole     linear      ``Quadrupole(l, k1=Kn1)`` (``TransferMap``)
Quadrupole     para/exact  the same with ``SecondTM`` (stand-in)
SBend          linear      ``SBend(l, angle, k1=Kn1, e1, e2)`` (``TransferMap``; edges
                           ``bend_edge_matrix`` with zero gap: tan(e) / rho, as ImpactX
                           ``DipEdge`` with zero gap)
SBend          exact       the same with ``SecondTM`` (stand-in)
Sextupole      exact       ``Sextupole(l, k2=Kn2)`` (``SecondTM``, stand-in)
Multipole      thin        ``Multipole(kn=[0, Kn1L, Kn2L, ...])`` (``MultipoleTM``:
                           px -= Re sum KnNL (x + i y)^N / N!, py += Im ..., ImpactX
                           ``Multipole.H``); skew and order-0 components refused
Solenoid       linear      ``Solenoid(l, k = Ksol / 2)`` (``TransferMap``; Ocelot's k is
                           B0 / (2 B rho), ImpactX's ks = B0 / (B rho))
Marker         any         ``Marker``
Instrument     any         a drift of its tier when it has a length, else ``Marker``
Kicker         any         thin ``Hcor(angle=-Kn0L)``, ``Vcor(angle=Ks0L)`` (between drift
                           halves of its tier when thick)
Aperture       any         ``Aperture(xmax, ymax, type="rect" | "ellipt")``, activated by
                           ``Navigator.activate_apertures`` (lost -> NaN rows)
RFCavity       thin        refused (see :func:`_rf_cavity`)
=============  ==========  ===========================================================

Tracking is Ocelot's ``track(lattice, particles, navigator)`` with a fresh ``Navigator``
per track (no progress printing, no Twiss on the way). Ocelot deletes a particle lost at an
aperture from the array and records its initial index (``lost_particle_recorder``); the
survivors keep their order, so the adapter puts every particle back in its row and the lost
ones as NaN rows (:func:`backends.base.final_particles`). Ocelot has no amplitude limit of its
own: a blow-up stays in the array with its non-finite coordinates.

Space charge: Ocelot's ``SpaceCharge`` process (``ocelot/cpbd/sc.py``) solves the Poisson
equation in the bunch frame on its own mesh (63^3 by default, sized to the beam) and kicks
once per ``Navigator`` unit step, not per ImpactX slice: a different discretisation of the
scenario's solver, so space-charge scenarios are refused. Gradients: finite differences
(``trackbench grad``). Threads: Ocelot's tracking is numpy (``numpy.dot``, ``einsum``; its
numba kernels are not used for tracking), so it runs on numpy's BLAS thread pool, which the
harness's ``OMP_NUM_THREADS`` sizes: :attr:`OcelotPrepared.threads` is that pool's size.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.base import Prepared, Unsupported, field_table, final_particles, int_order_note
from backends.translation import (
    LineBackend,
    Translation,
    aperture_limits,
    kicker_translator,
    multipole_orders,
    padded_orders,
)

if TYPE_CHECKING:
    from harness.model.lattice import Element
    from harness.model.scenario import Scenario

#: Lines Ocelot prints on import (its banner and notes on optional accelerators); anything
#: else it prints is passed on to stderr.
_IMPORT_CHATTER = ("initializing ocelot", "import: module ")


def import_ocelot() -> Any:
    """``import ocelot`` without its banner and import-time warnings (errors still raise).

    Ocelot prints ``initializing ocelot...`` on stdout, its dependencies warn on import
    (matplotlib deprecations through ``pmd_beamphysics``), and its ``ocelot`` logger has a
    console handler at INFO: the banner is dropped, other printed lines go to stderr, the
    logger is raised to ERROR."""
    if "ocelot" in sys.modules:
        return sys.modules["ocelot"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import ocelot
    for line in printed.getvalue().splitlines():
        if line.strip() and not line.startswith(_IMPORT_CHATTER):
            print(line, file=sys.stderr)
    import logging

    logging.getLogger("ocelot").setLevel(logging.ERROR)
    return ocelot


@dataclass(frozen=True)
class ElementSpec:
    """One Ocelot element to build: its class in ``ocelot``, keyword arguments, and the
    tracking method (a class name in ``ocelot``; "" for the element's own default)."""

    cls: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    method: str = ""

    def build(self, name: str) -> Any:
        ocelot = import_ocelot()
        kwargs = dict(self.kwargs)
        if self.method:
            kwargs["tm"] = getattr(ocelot, self.method)
        return getattr(ocelot, self.cls)(eid=name, **kwargs)


#: ImpactX's element of each (kind, tier) that Ocelot runs as a ``SecondTM`` stand-in.
_IMPACTX_NAME = {("Drift", "paraxial"): "ChrDrift", ("Drift", "exact"): "ExactDrift",
                 ("Instrument", "paraxial"): "ChrDrift", ("Instrument", "exact"): "ExactDrift",
                 ("Kicker", "paraxial"): "ChrDrift", ("Kicker", "exact"): "ExactDrift",
                 ("Quadrupole", "paraxial"): "ChrQuad", ("Quadrupole", "exact"): "ExactQuad",
                 ("SBend", "exact"): "ExactSbend", ("Sextupole", "exact"): "ExactMultipole"}


def _method(element: Element) -> tuple[str, str]:
    """``(Ocelot method, stand-in description)`` of a thick element at its tier: the
    first-order map at the linear tier (ImpactX's own model), else ``SecondTM``, named."""
    if element.tier == "linear":
        return "TransferMap", ""
    impactx = _IMPACTX_NAME.get((element.kind, element.tier), f"{element.kind} {element.tier}")
    return "SecondTM", f"{impactx}{int_order_note(element)}->SecondTM"


def _drift(element: Element) -> Translation:
    method, stand_in = _method(element)
    return Translation((ElementSpec("Drift", {"l": element.length}, method),), stand_in)


def _instrument(element: Element) -> Translation:
    return _drift(element) if element.length != 0.0 else _marker(element)


def _marker(element: Element) -> Translation:
    return Translation((ElementSpec("Marker"),))


def _quadrupole(element: Element) -> Translation:
    method, stand_in = _method(element)
    return Translation((ElementSpec("Quadrupole", {
        "l": element.length, "k1": float(element.params["Kn1"])}, method),), stand_in)


def _sbend(element: Element) -> Translation:
    """Sector bend with hard pole-face edges (``gap = 0``: edge focusing tan(e) / rho only,
    Ocelot ``bend_edge_matrix``, ImpactX ``DipEdge`` with zero gap)."""
    p = element.params
    method, stand_in = _method(element)
    return Translation((ElementSpec("SBend", {
        "l": element.length, "angle": float(p["angle"]), "k1": float(p.get("Kn1", 0.0)),
        "e1": float(p.get("e1", 0.0)), "e2": float(p.get("e2", 0.0))}, method),), stand_in)


def _sextupole(element: Element) -> Translation:
    method, stand_in = _method(element)
    return Translation((ElementSpec("Sextupole", {
        "l": element.length, "k2": float(element.params["Kn2"])}, method),), stand_in)


def _multipole(element: Element) -> Translation | Unsupported:
    """Thin normal kick ``Multipole(kn=[0, Kn1L, Kn2L, ...])`` (``MultipoleTM``)."""
    orders = multipole_orders(element.params)
    for order, (kn, ks) in orders.items():
        if ks != 0.0:
            return Unsupported(
                f"the Ocelot adapter does not translate Multipole {element.name} field "
                f"'Ks{order}L': Ocelot's Multipole has normal components only (MultipoleTM "
                "ignores tilt)")
        if order == 0 and kn != 0.0:
            return Unsupported(
                f"the Ocelot adapter does not translate Multipole {element.name} field 'Kn0L': "
                "Ocelot's kn[0] is a thin bend of the reference orbit (with p and tau terms), "
                "not ImpactX's dipole kick")
    normal, _ = padded_orders(orders)
    if not any(normal):
        return _marker(element)
    return Translation((ElementSpec("Multipole", {"kn": normal}),))


def _kick(element: Element) -> Translation:
    """A thin steering kick (ImpactX ``Kicker.H``: px += -Kn0L, py += Ks0L, independent of
    the energy): Ocelot's thin ``Hcor(angle=-Kn0L)`` and ``Vcor(angle=Ks0L)``
    (``cor_atom.py``: x' += angle, y' += angle)."""
    p = element.params
    return Translation(tuple(
        ElementSpec(cls, {"l": 0.0, "angle": angle}, "TransferMap")
        for cls, angle in (("Hcor", -float(p["Kn0L"])), ("Vcor", float(p["Ks0L"])))
        if angle != 0.0))


#: A steering kick, thin or between two drift halves (:func:`kicker_translator`).
_kicker = kicker_translator(_kick, _drift)


def _solenoid(element: Element) -> Translation:
    """Ocelot ``Solenoid(k = B0 / (2 B rho))`` = ``Ksol / 2`` (Brown and Chao's matrix in
    ``solenoid_atom.py``; ImpactX ``Sol.H`` ks = B0 / (B rho))."""
    return Translation((ElementSpec("Solenoid", {
        "l": element.length, "k": 0.5 * float(element.params["Ksol"])}, "TransferMap"),))


def _aperture(element: Element) -> Translation:
    a, b, elliptical = aperture_limits(element.params)
    return Translation((ElementSpec("Aperture", {
        "xmax": a, "ymax": b, "type": "ellipt" if elliptical else "rect"}),))


def _rf_cavity(element: Element) -> Unsupported:
    """ImpactX ``ShortRF`` is a thin energy kick that also accelerates the reference;
    Ocelot's ``Cavity`` (``CavityTM``) is a thick standing-wave cavity map with its own
    focusing (Rosenzweig-Serafini) and no zero-length form: not the same model."""
    return Unsupported(
        f"the Ocelot adapter does not translate RFCavity {element.name} (a short RF gap): "
        "Ocelot's Cavity is a thick standing-wave cavity map (CavityTM) with its own "
        "focusing, not ImpactX's ShortRF kick")


#: Harness kind -> translator.
TRANSLATORS: dict[str, Callable[[Element], Translation | Unsupported]] = dict(
    Drift=_drift, Quadrupole=_quadrupole, SBend=_sbend, Sextupole=_sextupole,
    Multipole=_multipole, Solenoid=_solenoid, Marker=_marker, Instrument=_instrument,
    Aperture=_aperture, Kicker=_kicker)

#: Element parameters each translator honours (a skew or order-0 thin component is refused
#: by :func:`_multipole` with its reason).
HONOURED_FIELDS: dict[str, frozenset[str]] = field_table(
    TRANSLATORS, SBend=("Kn1",), Multipole=("Kn*L", "Ks*L"))


#: Why a space-charge scenario is refused: Ocelot's solver is not the scenario's.
SPACE_CHARGE_REFUSAL = (
    "Ocelot's SpaceCharge process (its own bunch-frame mesh, kicks per Navigator step) is a "
    "different discretisation from ImpactX's solver the scenario names")


# --------------------------------------------------------------------------- coordinates


def to_ocelot(particles: np.ndarray) -> np.ndarray:
    """ImpactX ``(N, 6)`` (x, px, y, py, t, pt) -> Ocelot ``(6, N)`` (x, x', y, y', tau, p)."""
    p = np.asarray(particles, dtype=np.float64)
    out = np.array(p.T, dtype=np.float64, order="C", copy=True)
    out[5] = -out[5]
    return out


def from_ocelot(r: np.ndarray) -> np.ndarray:
    """Ocelot ``(6, N)`` -> ImpactX ``(N, 6)``."""
    out = np.array(np.asarray(r, dtype=np.float64).T, copy=True)
    out[:, 5] = -out[:, 5]
    return out


def reference_energy_GeV(gamma0: float) -> float:
    """``ParticleArray.E`` [GeV] giving Ocelot the reference's gamma0 (Ocelot: gamma0 =
    E / m_e_GeV)."""
    from ocelot.common.globals import m_e_GeV

    return float(gamma0) * float(m_e_GeV)


def blas_threads() -> int:
    """Threads of numpy's BLAS pool (threadpoolctl when installed, else
    ``OMP_NUM_THREADS``, else every CPU)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        counts = [int(pool["num_threads"]) for pool in threadpool_info()
                  if pool.get("user_api") == "blas" and "numpy" in str(pool.get("filepath"))]
        if counts:
            return max(counts)
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- prepared


@dataclass
class _Handle:
    """A ``ParticleArray`` in flight and the number of particles injected."""

    array: Any
    count: int


class OcelotPrepared(Prepared):
    """A scenario as an ``ocelot.MagneticLattice``, tracked by ``ocelot.track``."""

    def __init__(self, scenario: Scenario, specs: list[tuple[str, ElementSpec]], model: str):
        ocelot = import_ocelot()
        self.scenario = scenario
        self.model = model
        self.threads = blas_threads()
        self.energy_GeV = reference_energy_GeV(scenario.reference_particle.gamma)
        # a leading marker: Ocelot wants a non-empty sequence and warns about one element
        sequence = [ocelot.Marker(eid="start")] + [spec.build(name) for name, spec in specs]
        # an empty method table: every element keeps the method it was built with
        self.lattice = ocelot.MagneticLattice(sequence, method={})
        self.has_apertures = any(spec.cls == "Aperture" for _, spec in specs)

    def inject(self, particles: np.ndarray) -> _Handle:
        from ocelot import ParticleArray

        particles = np.asarray(particles, dtype=np.float64)
        if particles.ndim != 2 or particles.shape[1] != 6:
            raise ValueError(f"particles must have shape (N, 6), got {particles.shape}")
        array = ParticleArray(n=len(particles))
        array.rparticles = to_ocelot(particles)
        array.E = self.energy_GeV
        return _Handle(array, len(particles))

    def run(self, handle: _Handle) -> _Handle:
        from ocelot import Navigator, track

        navigator = Navigator(self.lattice)
        if self.has_apertures:
            navigator.activate_apertures()
        track(self.lattice, handle.array, navigator, print_progress=False, calc_tws=False)
        return handle

    def extract(self, handle: _Handle) -> np.ndarray:
        """Final particles in injection order; those Ocelot deleted at an aperture are NaN
        rows (:func:`backends.base.final_particles`)."""
        lost = np.zeros(handle.count, bool)
        lost[np.asarray(handle.array.lost_particle_recorder.lost_particles, int)] = True
        out = np.full((handle.count, 6), np.nan)
        out[~lost] = from_ocelot(handle.array.rparticles)
        return final_particles(out, lost=lost)


class OcelotBackend(LineBackend):
    """Ocelot (DESY / European XFEL), numpy transfer maps on the CPU."""

    name = "ocelot"
    distribution = "ocelot-collab"
    install_hint = "pip install -e '.[ocelot]'"
    honoured_fields = HONOURED_FIELDS
    translators = TRANSLATORS
    refused_kinds = {"RFCavity": _rf_cavity}
    #: The ``MagneticLattice`` of a plan's specs.
    prepared_class = OcelotPrepared
    space_charge_refusal = SPACE_CHARGE_REFUSAL

    @classmethod
    def _import(cls) -> None:
        import_ocelot()


#: Registered by :mod:`backends.registry`.
BACKEND = OcelotBackend
