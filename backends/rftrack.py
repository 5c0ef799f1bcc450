"""RF-Track adapter (``rf-track`` 2.7, module ``RF_Track``, CERN): harness lattice ->
``RF_Track.Lattice`` of RF-Track elements, particles in and out as a ``Bunch6d``.

Coordinates (exact in both directions, any energy). A ``Bunch6d`` holds one row per
macroparticle ``(x [mm], x' [mrad], y [mm], y' [mrad], t [mm/c], P [MeV/c])`` at a common
position S, with ``x' = dx/ds = P_x / P_z`` and ``y' = P_y / P_z`` (slopes, not momenta), ``t``
the arrival time times c and ``P`` the total momentum (RF-Track Reference Manual, "Beam
models: Bunch6d"; ``help(RF_Track.Bunch6d)``). ImpactX's coordinates are
``px = P_x / P0``, ``py = P_y / P0``, ``t = c (t - t_ref)`` [m] and
``pt = -(E - E0) / (P0 c)`` (ImpactX ``ImpactXParticleContainer.H``). With
``p = P / P0 = sqrt(1 - 2 pt / beta0 + pt^2)`` (delta + 1 from pt, ImpactX ``ChrQuad.H``) and
``pz = P_z / P0 = sqrt(p^2 - px^2 - py^2)``::

    x = 1e3 x      x' = 1e3 px / pz      y = 1e3 y      y' = 1e3 py / pz
    t = 1e3 t      P  = P0 p                                   (into RF-Track)

    pz = p / sqrt(1 + x'^2 + y'^2)   (x', y' in rad)      px = x' pz      py = y' pz
    pt = 1 / beta0 - sqrt(p^2 + 1 / (beta0 gamma0)^2)
    t  = 1e-3 t - S / beta0                                    (out of RF-Track)

(``E / (P0 c) = sqrt(p^2 + 1 / (beta0 gamma0)^2)`` and ``E0 / (P0 c) = 1 / beta0``.) RF-Track's
``t`` is the absolute time of flight: the reference particle, starting at t = 0, arrives at
the lattice end S at ``c t = S / beta0``, which the conversion out subtracts. ``P0 = m c
beta0 gamma0`` with the mass [MeV/c^2] and charge [e] of the scenario's reference particle
(the bunch is built with them), and every magnet is given the signed rigidity
``P_over_Q = P0 / q`` [MV/c], so ImpactX's normalised strengths (``Kn1`` [1/m^2] of the
reference particle) keep their meaning for either sign of charge.

Model. RF-Track's ``Drift`` moves a particle on its straight line (x += L x', the exact time
of flight): ImpactX's ``ExactDrift`` (measured equal to 2e-12 sigma). Its ``Quadrupole`` is a
thick-lens transfer matrix per particle (each particle's own momentum: chromatic), acting on
the slopes, no ImpactX tier; its ``Multipole`` and ``Sextupole`` are hard-edge magnetic
fields through which the Lorentz-force equations are integrated (GSL ``rk8pd``, adaptive),
i.e. the exact Hamiltonian solved to the integrator's tolerance: equal to ImpactX's
``ExactQuad`` at 400 sixth-order steps to 2e-13 sigma (tests), but not to ImpactX's stated
integrator (``nslice * mapsteps`` steps of order ``int_order``), so every integrated element
is a labelled stand-in. RF-Track has no first-order map in canonical coordinates and no
expanded (paraxial) Hamiltonian, so linear and paraxial drifts and quadrupoles are stand-ins:

=============  ==========  ===========================================================  ========
harness kind   tier        RF-Track element                                             vs IX
=============  ==========  ===========================================================  ========
Drift          exact       ``Drift(L)``                                                 same
Drift          lin./par.   ``Drift(L)`` (exact) for ImpactX ``Drift`` / ``ChrDrift``      stand-in
Quadrupole     lin./par.   ``Quadrupole(L, P_over_Q, Kn1)`` (chromatic thick-lens         stand-in
                           matrix) for ImpactX ``Quad`` / ``ChrQuad``
Quadrupole     exact       ``Multipole(L, P_over_Q, [0, Kn1 L])``, hard edge, ``rk8pd``,  stand-in
                           ``steps`` output steps, for ``ExactQuad``
Sextupole      exact       ``Sextupole(L, P_over_Q, Kn2)``, the same integrator,          stand-in
                           for ``ExactMultipole``
SBend          any         ``SBend(L, angle, P_over_Q, E1=e1, E2=e2)`` (RF-Track's own     stand-in
                           bend and pole faces) for ``Sbend`` / ``ExactSbend`` + linear
                           ``DipEdge``s (Kn1 refused by name)
Multipole      thin        ``Multipole(0, P_over_Q, KnL)`` (KnL[N] = KnNL, MAD-X's KNL;   stand-in
                           KsNL refused by name: RF-Track's skew sign is not checked)
Marker         any         nothing
Instrument     any         a drift when it has a length, else nothing                   as Drift
Aperture       any         a zero-length ``Drift`` with ``set_aperture(a, b,               same
                           "rectangular" / "circular")`` (elliptical for a != b)
others         -           not translated: Kicker, Solenoid, RFCavity (:data:`REFUSED`)
=============  ==========  ===========================================================  ========

``steps`` is the element's ``nslice * mapsteps`` (``set_nsteps``); ``rk8pd`` adapts its step
within each to GSL's tolerances (RF-Track's defaults, ``epsabs`` 1e-3, ``epsrel`` 0). Space
charge: RF-Track's ``SpaceCharge_PIC_FreeSpace`` solver has its own mesh (RF-Track's grid
over the bunch, not ImpactX's ``prob_relative`` dynamic mesh), in the bunch's own frame per
integration step of a ``Volume`` or per ``sc_nsteps`` of a lattice element: it is not the
scenario's model and is refused with that reason. Losses: RF-Track removes a particle that
hits an aperture from the bunch (the remaining rows keep their ``%id``, the injection index)
and records it in ``Lattice.get_lost_particles()`` with the position S of the loss; a particle
lost at the S of a scenario aperture is a NaN row, one stopped anywhere else a blow-up
(:func:`backends.base.final_particles`).

Import. ``import RF_Track`` prints a banner and asks pypi.org for a newer version; the
library's own environment variables ``RF_TRACK_NOSPLASH`` and ``RF_TRACK_NO_UPDATE_CHECK``
(read by ``_RF_Track`` when it loads; names found in the extension module) turn both off,
and :meth:`RFTrackBackend._import` sets them (``setdefault``) before the import.
Threads: ``RF_Track.number_of_threads`` (RF-Track's thread pool; its initial value comes from
``RF_TRACK_NUMBER_OF_THREADS`` or the machine's cores) is set at prepare time to
``OMP_NUM_THREADS`` when set (the runner sets it for ``--threads``), else every CPU, and
recorded as :attr:`Prepared.threads`. Gradients: none by AD; ``trackbench grad``
differentiates RF-Track by finite differences.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from backends.base import Prepared, Unsupported, field_table, final_particles, int_order_note
from backends.translation import (
    LineBackend,
    Translation,
    aperture_limits,
    padded_multipoles,
)

if TYPE_CHECKING:
    from harness.model.lattice import Element
    from harness.model.reference_particle import ReferenceParticle
    from harness.model.scenario import Scenario

#: RF-Track's own switches: no start-up banner, no update check over the network.
QUIET_ENVIRONMENT: dict[str, str] = {"RF_TRACK_NOSPLASH": "1", "RF_TRACK_NO_UPDATE_CHECK": "1"}

#: GSL integrator of RF-Track's field elements (an adaptive 8th-order Runge-Kutta).
ODE_ALGORITHM = "rk8pd"

#: Loss positions within this distance [m] of an aperture's S are losses at that aperture.
S_TOLERANCE = 1e-9


def import_rftrack() -> Any:
    """``RF_Track``, imported quietly (no banner, no update check)."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    import RF_Track

    return RF_Track


# --------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class ElementSpec:
    """One RF-Track element to build: ``kind`` (drift, quadrupole, multipole, sextupole,
    aperture), its length [m] and numbers (strengths normalised to the reference rigidity,
    integrator steps, aperture limits)."""

    kind: str
    length: float
    values: dict[str, Any] = field(default_factory=dict)

    def build(self, rftrack: Any, p_over_q: float) -> Any:
        """The RF-Track element (``p_over_q`` [MV/c], signed)."""
        v = self.values
        if self.kind == "drift":
            return rftrack.Drift(self.length)
        if self.kind == "quadrupole":
            return rftrack.Quadrupole(self.length, p_over_q, v["k1"])
        if self.kind == "sbend":
            return rftrack.SBend(self.length, v["angle"], p_over_q, v["e1"], v["e2"])
        if self.kind == "thin":
            return rftrack.Multipole(0.0, p_over_q, np.array(v["knl"], complex))
        if self.kind == "aperture":
            element = rftrack.Drift(0.0)
            shape = "circular" if v["elliptical"] else "rectangular"
            element.set_aperture(v["a"], v["b"], shape)
            return element
        if self.kind == "multipole":
            element = rftrack.Multipole(self.length, p_over_q,
                                        np.array([0.0, v["k1"] * self.length], complex))
        elif self.kind == "sextupole":
            element = rftrack.Sextupole(self.length, p_over_q, v["k2"])
        else:  # pragma: no cover - the translators make only the kinds above
            raise ValueError(f"unknown RF-Track element spec {self.kind!r}")
        element.disable_end_fields()
        element.set_odeint_algorithm(ODE_ALGORITHM)
        element.set_nsteps(int(v["steps"]))
        return element


_TIER_DRIFT = {"linear": "Drift", "paraxial": "ChrDrift", "exact": "ExactDrift"}


def _drift(element: Element) -> Translation:
    spec = ElementSpec("drift", element.length)
    if element.tier == "exact":
        return Translation((spec,))
    return Translation((spec,), f"{_TIER_DRIFT[element.tier]}->exact Drift")


def _instrument(element: Element) -> Translation:
    return _drift(element) if element.length != 0.0 else Translation(())


def _marker(element: Element) -> Translation:
    return Translation(())


def _quadrupole(element: Element) -> Translation:
    k1 = float(element.params["Kn1"])
    if element.tier != "exact":
        name = "Quad" if element.tier == "linear" else "ChrQuad"
        return Translation((ElementSpec("quadrupole", element.length, {"k1": k1}),),
                           f"{name}->Quadrupole chromatic matrix")
    steps = element.integrator_steps
    return Translation((ElementSpec("multipole", element.length,
                                    {"k1": k1, "steps": steps}),),
                       f"ExactQuad{int_order_note(element)} x{steps}->Multipole field "
                       f"{ODE_ALGORITHM} x{steps}")


def _sextupole(element: Element) -> Translation:
    steps = element.integrator_steps
    return Translation((ElementSpec("sextupole", element.length,
                                    {"k2": float(element.params["Kn2"]), "steps": steps}),),
                       f"ExactMultipole{int_order_note(element)} x{steps}->Sextupole field "
                       f"{ODE_ALGORITHM} x{steps}")


def _sbend(element: Element) -> Translation:
    """RF-Track's ``SBend(L, angle, P_over_Q, E1, E2)`` with its own pole-face edges."""
    p = element.params
    name = "Sbend" if element.tier == "linear" else "ExactSbend"
    return Translation((ElementSpec("sbend", element.length, {
        "angle": float(p["angle"]), "e1": float(p.get("e1", 0.0)),
        "e2": float(p.get("e2", 0.0))}),), f"{name}+DipEdge->SBend")


def _multipole(element: Element) -> Translation:
    """A thin normal multipole: RF-Track ``Multipole(0, P_over_Q, KnL)`` with ``KnL[N]`` =
    KnNL (MAD-X's KNL, as ImpactX ``Multipole``: kick KnNL x^N / N!)."""
    normal, _ = padded_multipoles(element.params)
    if not any(normal):
        return Translation(())
    return Translation((ElementSpec("thin", 0.0, {"knl": tuple(normal)}),),
                       "Multipole->thin Multipole")


def _aperture(element: Element) -> Translation:
    a, b, elliptical = aperture_limits(element.params)
    return Translation((ElementSpec("aperture", 0.0, {"a": a, "b": b,
                                                      "elliptical": elliptical}),))


def _refuse(why: str) -> Callable[[Element], Unsupported]:
    def refuse(element: Element) -> Unsupported:
        return Unsupported(f"the RF-Track adapter does not translate {element.kind} "
                           f"{element.name}: {why}")
    return refuse


#: Kinds refused outright, with the reason.
REFUSED: dict[str, Callable[[Element], Unsupported]] = {
    "RFCavity": _refuse("ImpactX's ShortRF is a thin gap that also accelerates the reference "
                        "particle; RF-Track's RF elements are field maps with a length"),
    "Kicker": _refuse("RF-Track's Corrector has not been checked against ImpactX's Kicker"),
    "Solenoid": _refuse("RF-Track's Solenoid is a field with its own fringe model, not "
                        "ImpactX's hard-edge Sol map"),
}

#: Harness kind -> translator.
TRANSLATORS: dict[str, Callable[[Element], Translation]] = dict(
    Drift=_drift, Quadrupole=_quadrupole, Sextupole=_sextupole, SBend=_sbend,
    Multipole=_multipole, Marker=_marker, Instrument=_instrument, Aperture=_aperture)

#: Element parameters each translator honours (anything else is refused by name).
#: (thin multipoles: the normal ``KnNL``; RF-Track's skew sign is not checked, so ``KsNL`` is
#: refused by name).
HONOURED_FIELDS: dict[str, frozenset[str]] = field_table(TRANSLATORS, Multipole=("Kn*L",))


#: Why a space-charge scenario is refused: RF-Track's solver is not the scenario's.
SPACE_CHARGE_REFUSAL = (
    "RF-Track's SpaceCharge_PIC_FreeSpace solves on its own mesh over the bunch, not "
    "ImpactX's dynamic mesh (prob_relative) with its kick placement, so it is not the "
    "scenario's space-charge model")


# --------------------------------------------------------------------------- coordinates


def reference_momentum_MeV(reference: ReferenceParticle) -> float:
    """P0 c [MeV] of the reference particle."""
    return float(reference.mass_MeV * reference.beta_gamma)


def to_rftrack(particles: np.ndarray, reference: ReferenceParticle) -> np.ndarray:
    """ImpactX ``(N, 6)`` (x, px, y, py, t, pt) -> RF-Track's ``(N, 6)``
    (x [mm], x' [mrad], y [mm], y' [mrad], t [mm/c], P [MeV/c]) at S = 0."""
    p = np.asarray(particles, dtype=np.float64)
    pt = p[:, 5]
    momentum = np.sqrt(1.0 - 2.0 * pt / reference.beta + pt * pt)
    pz = np.sqrt(momentum * momentum - p[:, 1] ** 2 - p[:, 3] ** 2)
    return np.column_stack([1e3 * p[:, 0], 1e3 * p[:, 1] / pz, 1e3 * p[:, 2],
                            1e3 * p[:, 3] / pz, 1e3 * p[:, 4],
                            reference_momentum_MeV(reference) * momentum])


def from_rftrack(rows: np.ndarray, reference: ReferenceParticle, s: float = 0.0) -> np.ndarray:
    """RF-Track's ``(N, 6)`` at position ``s`` [m] -> ImpactX ``(N, 6)``."""
    r = np.asarray(rows, dtype=np.float64)
    momentum = r[:, 5] / reference_momentum_MeV(reference)
    xp, yp = 1e-3 * r[:, 1], 1e-3 * r[:, 3]
    pz = momentum / np.sqrt(1.0 + xp * xp + yp * yp)
    pt = 1.0 / reference.beta - np.sqrt(momentum * momentum + 1.0 / reference.beta_gamma**2)
    return np.column_stack([1e-3 * r[:, 0], xp * pz, 1e-3 * r[:, 2], yp * pz,
                            1e-3 * r[:, 4] - s / reference.beta, pt])


# --------------------------------------------------------------------------- prepared


@contextlib.contextmanager
def _quiet_stderr(active: bool) -> Iterator[None]:
    """Silence file descriptor 2 while ``active``: RF-Track's C++ warns there on every
    ``get_phase_space`` of a bunch whose first particle was lost (that it then takes the
    centroid as reference particle, which x, x', y, y', t and P do not use)."""
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tracking_threads() -> int:
    """Threads RF-Track tracks with: ``OMP_NUM_THREADS`` when set, else every CPU."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


class RFTrackPrepared(Prepared):
    """A scenario as an ``RF_Track.Lattice`` (``Lattice.track`` of a ``Bunch6d``)."""

    def __init__(self, scenario: Scenario, specs: list[tuple[str, ElementSpec]], model: str):
        rftrack = import_rftrack()
        self.rftrack = rftrack
        self.reference = scenario.reference_particle
        self.model = model
        rftrack.number_of_threads = tracking_threads()
        self.threads = int(rftrack.number_of_threads)
        p_over_q = reference_momentum_MeV(self.reference) / self.reference.charge_qe
        self.lattice = rftrack.Lattice()
        self.aperture_s: list[float] = []
        position = 0.0
        for name, spec in specs:
            element = spec.build(rftrack, p_over_q)
            element.set_name(name)
            self.lattice.append(element)
            if spec.kind == "aperture":
                self.aperture_s.append(position)
            position += spec.length
        self.lattice.set_tt_nsteps(0)  # no transport table: nothing is read from it
        self.length = float(self.lattice.get_length())

    def inject(self, particles: np.ndarray) -> Any:
        particles = np.asarray(particles, dtype=np.float64)
        if particles.ndim != 2 or particles.shape[1] != 6:
            raise ValueError(f"particles must have shape (N, 6), got {particles.shape}")
        rows = to_rftrack(particles, self.reference)
        bunch = self.rftrack.Bunch6d(self.reference.mass_MeV, float(max(len(rows), 1)),
                                     self.reference.charge_qe, rows)
        return bunch, len(rows)

    def run(self, handle: Any) -> Any:
        bunch, count = handle
        return self.lattice.track(bunch), count

    def extract(self, handle: Any) -> np.ndarray:
        """Final particles in injection order (RF-Track's ``%id``): those RF-Track lost at a
        scenario aperture are NaN rows, any other it stopped are blow-ups."""
        bunch, count = handle
        with _quiet_stderr(int(bunch.size()) < count):
            table = np.asarray(bunch.get_phase_space("%x %xp %y %yp %t %Pc %id", "all"),
                               dtype=np.float64).reshape(-1, 7)
        out = np.full((count, 6), np.nan)
        ids = table[:, 6].astype(np.int64)
        out[ids] = from_rftrack(table[:, :6], self.reference, self.length)
        missing = np.ones(count, bool)
        missing[ids] = False
        lost = np.zeros(count, bool)
        if missing.any():
            losses = np.asarray(self.lattice.get_lost_particles(), dtype=np.float64)
            losses = losses.reshape(-1, 11) if losses.size else np.zeros((0, 11))
            at = losses[:, 10].astype(np.int64)
            at_aperture = np.array([any(abs(s - a) <= S_TOLERANCE for a in self.aperture_s)
                                    for s in losses[:, 6]], bool)
            lost[at[at_aperture]] = True
        return final_particles(out, lost=lost & missing, stopped=missing & ~lost)


class RFTrackBackend(LineBackend):
    """RF-Track (CERN): tracking with space charge and RF structures, C++ with threads."""

    name = "rftrack"
    distribution = "rf-track"
    install_hint = "pip install -e '.[rftrack]'"
    honoured_fields = HONOURED_FIELDS
    translators = TRANSLATORS
    refused_kinds = REFUSED
    #: The ``RF_Track.Lattice`` of a plan's specs.
    prepared_class = RFTrackPrepared
    space_charge_refusal = SPACE_CHARGE_REFUSAL
    #: The drift every tier runs: RF-Track's ``Drift`` is ImpactX's ``ExactDrift``
    #: (``src/elements/ExactDrift.H``), a labelled stand-in at the linear and paraxial tiers.
    linear_tier_drift: ClassVar[str] = "exact"

    @classmethod
    def _import(cls) -> None:
        import_rftrack()


#: Registered by :mod:`backends.registry`.
BACKEND = RFTrackBackend
