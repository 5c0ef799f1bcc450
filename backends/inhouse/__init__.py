"""The in-house differentiable PyTorch tracker, as a trackbench backend.

The tracker (:mod:`backends.inhouse.tracker`) applies ImpactX's element maps in ImpactX's
coordinates, so particles cross the adapter boundary without any conversion. Torch is
imported only when a scenario is prepared (importing this module stays cheap).

Lost particles (apertures, particles outside the exact bend's domain) are kept in the
array and returned by :meth:`InhousePrepared.extract` as rows of NaN, so that the particle
order is the injection order (ImpactX instead removes them from its container).

Without space charge, particles are held as six separate contiguous columns (structure of
arrays, like ImpactX's particle container) and :meth:`InhousePrepared.run` tracks them in
place without autograd, through :class:`backends.inhouse.compiled.CompiledForward`: compiled
with ``torch.compile`` from 10^3 particles on, eager below (``TRACKBENCH_INHOUSE_COMPILE``
or ``prepare(..., compile=...)`` override this). The first run of a particle count compiles;
:attr:`InhousePrepared.compile_s` reports that time and :attr:`InhousePrepared.compiled`
whether compiled code ran.

Math settings (:attr:`InhouseBackend.math_modes`): ``ieee`` compiles with inductor's
default C++ flags (``-fno-unsafe-math-optimizations -ffp-contract=off``,
``torch/_inductor/cpp_builder.py`` ``_get_ffast_math_flags``); ``fast`` with
``cpp.enable_unsafe_math_opt_flag`` (``-funsafe-math-optimizations``: reassociation,
reciprocals) and ``cpp.enable_floating_point_contract_flag = "fast"`` (fused multiply-adds)
on the CPU, and inductor's ``use_fast_math`` (Triton's flush-to-zero ``exp``) on CUDA
(:data:`INDUCTOR_MATH`). A ``fast`` case is always compiled (whatever its particle count or
``TRACKBENCH_INHOUSE_COMPILE``), so that its tracks run the fast-math code; the flags are
inductor configuration, part of the key of inductor's FX-graph cache, so a kernel compiled
for one setting is never reused for the other. What runs outside the compiled segments (the
space-charge solve) is eager torch in either setting. The spin and envelope trackers run
eagerly: ``fast`` is refused for them.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from backends.base import (
    IEEE,
    Backend,
    Plan,
    Prepared,
    Supported,
    Unsupported,
    final_particles,
)
from backends.inhouse.kinds import HONOURED_FIELDS, KINDS
from backends.torch_support import device_support, synchronize, torch_dtype

if TYPE_CHECKING:
    from backends.inhouse.sc_tracking import SpaceChargeTracker
    from backends.inhouse.spin import SpinColumnsTracker
    from backends.inhouse.tracker import Tracker
    from harness.model.scenario import Scenario

#: Kinds whose map integrates along an on-axis profile over the whole element (ImpactX
#: ``SoftQuad.H``, ``SoftSol.H``, ``RFCavity.H``): the space-charge tracker's cut copies
#: would not be slices.
SOFT_EDGE_KINDS = frozenset({"ImpactX.SoftQuadrupole", "ImpactX.SoftSolenoid",
                             "ImpactX.RFCavity"})


#: Inductor configuration of each math setting (:data:`backends.base.MATH_MODES`): ``ieee``
#: states inductor's defaults (so a ``TORCHINDUCTOR_*`` variable cannot turn them on
#: unseen), ``fast`` its fast-math flags (``torch/_inductor/config.py``: ``cpp.*`` for the
#: C++/OpenMP code on CPU, ``use_fast_math`` for Triton on CUDA).
INDUCTOR_MATH: dict[str, dict[str, Any]] = {
    "ieee": {"cpp.enable_unsafe_math_opt_flag": False,
             "cpp.enable_floating_point_contract_flag": "off", "use_fast_math": False},
    "fast": {"cpp.enable_unsafe_math_opt_flag": True,
             "cpp.enable_floating_point_contract_flag": "fast", "use_fast_math": True},
}


def inductor_math(math: str) -> contextlib.AbstractContextManager:
    """Context in which inductor compiles with the flags of a math setting
    (:data:`INDUCTOR_MATH`)."""
    from torch._inductor import config

    return config.patch(INDUCTOR_MATH[math])


class InhousePrepared(Prepared):
    """A scenario translated into a :class:`~backends.inhouse.tracker.Tracker` (or the
    space-charge tracker) on one device and dtype.

    Args:
        tracker: an object with ``track(particles) -> (particles, alive | None)`` (or just
            the particles), particles a ``(N, 6)`` tensor on ``device``.
        device: torch device.
        dtype: torch dtype.
        model: :func:`backends.base.model_signature` of the scenario.
        compile: compile the forward track (True), never (False), or by particle count
            (None); see :func:`backends.inhouse.compiled.compile_mode`.
        math: ``ieee`` or ``fast``: the inductor flags of the compilation
            (:data:`INDUCTOR_MATH`).

    Attributes:
        threads: torch CPU threads used by the last run (at construction before that).
        compiled: whether the last run executed compiled code (None before the first run,
            False for the eager path and for the space-charge tracker).
        compile_s: seconds spent compiling (first run of each particle count), 0.0 if none.
        compile_error: why compilation fell back to the eager path ("" if it did not).
    """

    def __init__(self, tracker: Any, device, dtype, model: str, compile: bool | None = None,
                 math: str = IEEE):
        import torch

        from backends.inhouse.compiled import CompiledForward
        from backends.inhouse.sc_tracking import SpaceChargeTracker
        from backends.inhouse.tracker import Tracker

        self.tracker = tracker
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model
        self.threads = torch.get_num_threads()
        self.forward = (CompiledForward(tracker.steps(), compile)
                        if isinstance(tracker, Tracker | SpaceChargeTracker) else None)
        self.compiled = None if self.forward is not None else False
        self.math = math

    def inject(self, particles: np.ndarray):
        """``(N, 6)`` float64 numpy -> six contiguous columns (separate tensors, tracked in
        place) on the device in the tracking dtype, or one ``(N, 6)`` tensor for the
        space-charge tracker (``(N, 9)`` with the spins for the spin tracker)."""
        import torch

        if self.forward is not None:
            return tuple(torch.tensor(np.ascontiguousarray(particles[:, i]), dtype=self.dtype,
                                      device=self.device) for i in range(6))
        return torch.as_tensor(np.ascontiguousarray(particles), dtype=torch.float64
                               ).to(device=self.device, dtype=self.dtype)

    def run(self, handle):
        """Track (no autograd graph is recorded); returns ``(particles, alive | None)``.
        Injected columns are updated in place (run each injected handle once)."""
        import torch

        self.threads = torch.get_num_threads()
        if self.forward is not None:
            if self.forward.compiled:   # compiled already: no configuration to apply
                alive = self.forward(handle)
            else:                       # this call may compile: with the case's flags
                with inductor_math(self.math):
                    alive = self.forward(handle)
            self.compiled = self.forward.compiled
            self.compile_s = self.forward.compile_s
            self.compile_error = self.forward.error
            return handle, alive
        with torch.no_grad():
            out = self.tracker.track(handle)
        if isinstance(out, tuple):
            return out
        return out, None

    def synchronize(self) -> None:
        """Wait for queued CUDA work."""
        synchronize(self.device)

    def extract(self, handle) -> np.ndarray:
        """Final particles as ``(N, 6)`` (``(N, 9)`` with spins) float64 numpy; lost
        particles are rows of NaN."""
        import torch

        particles, alive = handle
        if isinstance(particles, tuple):
            particles = torch.stack(particles, dim=-1)
        out = particles.detach().to(device="cpu", dtype=torch.float64).numpy()
        lost = None if alive is None else ~alive.detach().cpu().numpy()
        return final_particles(out, lost=lost)


class CarriedSpins:
    """``beam.spin.push: false``: ``(N, 9)`` particles whose six coordinates go through
    ``tracker`` (``track(particles) -> (particles, alive | None)``) and whose spins are
    carried unchanged, as ImpactX carries given spins with ``sim.spin = False``; a particle
    whose coordinates the tracker leaves all NaN has NaN spins too (lost rows are NaN
    through :func:`backends.base.final_particles`)."""

    def __init__(self, tracker: Any):
        self.tracker = tracker

    def track(self, particles):
        """Track ``(N, 9)`` particles; the ``(N, 9)`` result and the survival mask."""
        import torch

        out = self.tracker.track(particles[..., :6].contiguous())
        final, alive = out if isinstance(out, tuple) else (out, None)
        unreadable = torch.isnan(final).all(dim=-1, keepdim=True)
        spins = torch.where(unreadable, torch.nan, particles[..., 6:9])
        return torch.cat((final, spins), dim=-1), alive


def bucket_length(scenario: Scenario) -> float | None:
    """The bucket length [m] of the scenario's periodic particle boundary, or None."""
    boundary = scenario.particle_boundary
    return None if boundary is None else boundary.bucket_length


def _spin_support(scenario: Scenario) -> Unsupported | None:
    """Unsupported naming the first element without an in-house spin push
    (:data:`backends.inhouse.spin.REFUSED`), or spin with space charge."""
    if scenario.space_charge is not None:
        return Unsupported("beam.spin with space charge: the in-house space-charge tracker "
                           "does not push spins")
    from backends.inhouse.spin import SpinUnsupported, check_spin_support

    try:
        check_spin_support(scenario.elements)
    except SpinUnsupported as error:
        return Unsupported(str(error))
    return None


class InhouseBackend(Backend):
    """The in-house tracker: ImpactX's maps in PyTorch, differentiable, CPU and CUDA."""

    name: ClassVar[str] = "inhouse"
    distribution: ClassVar[str] = "trackbench"
    install_hint: ClassVar[str] = "pip install -e . (needs torch)"
    element_kinds: ClassVar[frozenset[str]] = KINDS
    #: The in-house maps of these kinds, ported from ImpactX's, give ImpactX's inverse
    #: element at a negative length unchanged (``tests/test_reverse.py``).
    reversible_kinds: ClassVar[frozenset[str]] = frozenset({
        "Drift", "Quadrupole", "Solenoid", "SBend", "Sextupole", "Octupole",
        "ImpactX.ExactMultipole", "ImpactX.ExactSbend"})
    honoured_fields: ClassVar[dict[str, frozenset[str]]] = HONOURED_FIELDS
    differentiable: ClassVar[bool] = True
    space_charge_kinds: ClassVar[frozenset[str] | None] = frozenset(
        {"3d", "2d", "2p5d", "gauss3d", "gauss2p5d"})
    takes_plans: ClassVar[bool] = True
    #: ImpactX's spin maps ported map by map (:mod:`backends.inhouse.spin`); the maps
    #: without a port are refused by name when the scenario is planned.
    spin_tracking: ClassVar[bool] = True
    linear_probes: ClassVar[bool] = True
    particle_boundaries: ClassVar[frozenset[str]] = frozenset({"periodic"})
    tracking_modes: ClassVar[frozenset[str]] = frozenset({"particles", "envelope"})
    envelope_space_charge_kinds: ClassVar[frozenset[str]] = frozenset({"2d", "3d"})
    envelope_class: ClassVar[str] = "backends.inhouse.envelope:InhouseEnvelope"
    #: Fast-math through inductor's flags (see the module docstring).
    math_modes: ClassVar[frozenset[str]] = frozenset({"ieee", "fast"})

    @classmethod
    def _import(cls) -> None:
        import torch  # noqa: F401

    def supports(self, scenario: Scenario, device: str = "cpu",
                 dtype: str = "float64") -> Supported | Unsupported:
        """Element kinds, dtype, device (CUDA must be available) and space charge."""
        base = super().supports(scenario, device, dtype)
        if not base:
            return base
        refused = device_support(self.name, device, dtype)
        if refused is not None:
            return refused
        from backends.translation import exact_tier_multipoles

        for element in scenario.elements:   # the maps are ImpactX's, so are their limits
            refused = exact_tier_multipoles(element)
            if refused is not None:
                return refused
        if scenario.spin_push:
            refused = _spin_support(scenario)
            if refused is not None:
                return refused
        if scenario.particle_boundary is not None and (scenario.spin_push
                                                       or scenario.space_charge is not None):
            return Unsupported("particle_boundary with " + ("beam.spin" if scenario.spin else
                               "space charge") + ": only the in-house tracker without spins "
                               "and space charge applies the boundary after every element")
        sc = scenario.space_charge
        if sc is not None and sc.domain_sigmas is not None and sc.prob_relative is None:
            return Unsupported(f"space_charge.domain_sigmas {sc.domain_sigmas:g}: the in-house "
                               "mesh is ImpactX's, prob_relative x the beam's extent per axis, "
                               "never +-k rms sizes; state space_charge.prob_relative")
        if scenario.space_charge is not None:
            thick_kickers = [e.name for e in scenario.elements
                             if e.kind == "Kicker" and e.length != 0.0]
            if thick_kickers:
                return Unsupported(f"thick Kicker with space charge ({thick_kickers[0]}): "
                                   "the space-charge tracker does not cut a kicker around "
                                   "its kick")
            soft = [e for e in scenario.elements if e.kind in SOFT_EDGE_KINDS]
            if soft:
                return Unsupported(f"{soft[0].kind} with space charge ({soft[0].name}): the "
                                   "space-charge tracker cuts an element into shorter "
                                   "copies, which would rescale the on-axis profile")
        piped = [e for e in scenario.elements if "aperture_x" in e.params]
        soft_sliced = [e for e in piped if e.kind in SOFT_EDGE_KINDS and e.nslice > 1]
        if soft_sliced:
            return Unsupported(f"{soft_sliced[0].kind} with a pipe aperture and nslice "
                               f"{soft_sliced[0].nslice} ({soft_sliced[0].name}): its map "
                               "reads the whole on-axis profile, so the in-house tracker "
                               "cannot check the aperture between its slices")
        if piped and scenario.tracking == "envelope":
            return Unsupported(f"pipe aperture ({piped[0].name}.aperture_x) with tracking "
                               "'envelope': the in-house envelope tracker does not cut "
                               "elements at their apertures")
        if scenario.tracking == "envelope":
            from backends.inhouse.envelope import check_scenario

            reason = check_scenario(scenario)
            if reason is not None:
                return Unsupported(reason)
        return base

    def math_checks(self, scenario: Scenario, device: str, dtype: str,
                    math: str) -> Unsupported | None:
        """``fast`` where the track is compiled: not the spin or envelope trackers."""
        if math == IEEE:
            return None
        if scenario.tracking == "envelope":
            return Unsupported(f"math {math!r}: the in-house envelope tracker runs eagerly "
                               "(no compiled code to build with fast-math flags)")
        if scenario.spin:
            return Unsupported(f"math {math!r}: the in-house spin tracker runs eagerly (no "
                               "compiled code to build with fast-math flags)")
        return None

    def prepare(self, scenario: Scenario | Plan, device: str = "cpu", dtype: str = "float64",
                compile: bool | None = None) -> InhousePrepared:
        """Build the tracker of a plan (a scenario is planned first; all constant maps are
        assembled on the device here); ``compile`` as in :class:`InhousePrepared`
        (compilation itself happens on the first run), always True for a ``fast`` plan."""
        plan = self.planned(scenario, device, dtype)
        if plan.math != IEEE:
            if compile is False:
                raise ValueError(f"math {plan.math!r} runs compiled code; compile=False "
                                 "contradicts it")
            compile = True
        case: Scenario = plan.scenario
        device, dtype = plan.device, plan.dtype
        from backends.inhouse.tracker import Tracker

        torch_type = torch_dtype(dtype)
        tracker: Tracker | SpaceChargeTracker | SpinColumnsTracker | CarriedSpins
        if case.spin_push:
            from backends.inhouse.spin import SpinColumnsTracker

            tracker = SpinColumnsTracker(case.elements, case.reference_particle)
        elif case.space_charge is not None:
            from backends.inhouse.sc_tracking import build_space_charge_tracker

            tracker = build_space_charge_tracker(case, device, torch_type)
        else:
            tracker = Tracker(case.elements, case.reference_particle, device=device,
                              dtype=torch_type, bucket_length=bucket_length(case))
        if case.spin and not case.spin_push:
            tracker = CarriedSpins(tracker)
        return InhousePrepared(tracker, device, torch_type, plan.model,
                               compile=compile, math=plan.math)

    def prepare_single_use(self, scenario: Scenario | Plan, device: str = "cpu",
                           dtype: str = "float64") -> InhousePrepared:
        """:meth:`prepare` without compilation: a lattice tracked once (finite-difference
        evaluations, each with other parameter values) would recompile every time."""
        return self.prepare(scenario, device, dtype, compile=False)

    def differentiable_observables(self, scenario: Scenario | Plan, parameters: list[str],
                                   names: list[str], particles: np.ndarray, device: str,
                                   dtype: str) -> Any:
        """``(g, theta0)`` of :func:`backends.inhouse.objective.make_observables` (see
        :meth:`Backend.differentiable_observables`): it tracks the given initial particles
        for element parameters and draws the scenario's seeded ``len(particles)`` particles
        in the graph for beam parameters (with space charge: through the space-charge
        tracker); ``scenario`` may be the case's plan (not decided again)."""
        plan = scenario if isinstance(scenario, Plan) else self.plan(scenario, device, dtype)
        if isinstance(plan, Unsupported):
            return None
        case: Scenario = plan.scenario
        if case.spin:
            # spin observables are differentiable through SpinTracker.track(..., values),
            # not wired to this interface: gradients of a spin scenario are finite
            # differences of the tracked (N, 9) particles
            return None
        if case.tracking == "envelope":
            from backends.inhouse.envelope import make_envelope_observables

            return make_envelope_observables(case, parameters, names, device,
                                             torch_dtype(dtype))
        from backends.inhouse.objective import make_observables

        return make_observables(case, parameters, names, len(particles), device,
                                torch_dtype(dtype), particles=particles)


BACKEND = InhouseBackend
