"""The common backend interface.

A backend is a class with a ``name``. Whether it can run a case is decided once:
:meth:`Backend.plan` answers a scenario/device/dtype with a :class:`Plan` (the model it
runs, notes and, for an adapter that translates ahead, its translated lattice) or
:class:`Unsupported`; :meth:`Backend.prepare_planned` builds the :class:`Prepared` tracker
from the plan without deciding again. The common checks (element kinds and fields, devices,
dtypes, space-charge kinds) are the base class's, from what the adapter declares
(:attr:`Backend.element_kinds`, :attr:`Backend.honoured_fields`, :attr:`Backend.devices`,
:attr:`Backend.dtypes`, :attr:`Backend.space_charge_kinds`). The older form,
:meth:`Backend.supports` and ``prepare(scenario, device, dtype)``, keeps working: a backend
that only has those gets a :meth:`Backend.plan` built on them. A prepared tracker moves
particles in and out of the code (not timed) and tracks them (timed)::

    plan = backend.plan(scenario, device="cpu", dtype="float64")   # or Unsupported
    prepared = backend.prepare_planned(plan)
    handle = prepared.inject(particles)      # (N, 6) float64 numpy, ImpactX coordinates
    handle = prepared.run(handle)            # the timed part
    prepared.synchronize()
    final = prepared.extract(handle)         # (N, 6) float64 numpy, same particle order
    prepared.close()

``prepared.track(particles)`` does all of it. Coordinates at the boundary are always
ImpactX's canonical (x, px, y, py, t, pt); each adapter converts exactly.

Spins: when the scenario's beam has a ``spin:`` block (:attr:`Scenario.spin
<harness.model.scenario.Scenario.spin>`), the particles handed in and out are ``(N, 9)``:
the six coordinates, then the unit spin ``(sx, sy, sz)`` in the Frenet-Serret frame of the
reference orbit (:mod:`harness.model.spin`); the same array flows through ``inject``,
``extract``, the reference particles file and the agreement (which adds the three spin
columns). Without a ``spin:`` block particles stay ``(N, 6)``. Only a backend that declares
:attr:`Backend.spin_tracking` is handed spins: :meth:`Backend.common_checks` refuses a spin
scenario for the others with :attr:`Backend.spin_refusal` ("no spin tracking"). A lost
particle's row is NaN in all nine columns.

Math (the ``math`` setting of a case, beside its dtype): ``ieee`` runs the code as it
is built, ``fast`` with its compiler's fast-math flags where the code offers them at run time
(:data:`MATH_MODES`). A backend declares the settings it has (:attr:`Backend.math_modes`);
:meth:`Backend.math_refused` refuses the others with :attr:`Backend.math_refusal`, in
:meth:`Backend.common_checks` and in :meth:`Backend.plan_case`, which plans a case with its
math setting (:attr:`Plan.math`). A backend with a fast mode applies it while preparing
from the plan.

Final particles follow one convention (:func:`final_particles`, read back by
:func:`harness.model.observables.fates`): a particle lost at an aperture of the scenario is a row of
six NaN; every other particle keeps the coordinates the code returned, and one that blew up
(non-finite coordinates, or stopped by the code anywhere but at an aperture of the scenario)
is never a row of six NaN, so that a blow-up never reads as a loss.
"""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from harness.model.kinds import EXTENSION_NAMESPACE
from harness.model.scenario import model_signature
from harness.model.vocabulary import REQUIRED_FIELDS, field_declared

if TYPE_CHECKING:
    from harness.model.scenario import Scenario


#: The math settings of a case: ``ieee`` (the code as built: no flag that lets the compiler
#: reorder, contract or approximate floating-point operations) and ``fast`` (the fast-math
#: flags of the code's compiler, where the code offers them at run time).
MATH_MODES: tuple[str, ...] = ("ieee", "fast")
#: The default math setting.
IEEE = "ieee"


@dataclass(frozen=True)
class Unsupported:
    """A case the backend cannot run, with a reason the user can act on. Falsy."""

    reason: str

    def __bool__(self) -> Literal[False]:
        return False


@dataclass(frozen=True)
class Supported:
    """A case the backend can run. ``model`` names what it runs (see :attr:`Prepared.model`)."""

    model: str
    note: str = ""

    def __bool__(self) -> Literal[True]:
        return True


@dataclass(frozen=True)
class Plan(Supported):
    """A case a backend will run, decided once: what :meth:`Backend.prepare_planned` builds
    from without checking again.

    Attributes:
        model, note: as :class:`Supported` (the model label, the support note).
        scenario, device, dtype: the case.
        lattice: the backend's translated lattice (None for a backend that translates
            while preparing).
        math: the case's math setting (:data:`MATH_MODES`), set by
            :meth:`Backend.plan_case`; a backend with a ``fast`` mode applies it while
            preparing.
    """

    scenario: Any = None
    device: str = "cpu"
    dtype: str = "float64"
    lattice: Any = None
    math: str = IEEE


@dataclass(frozen=True)
class Availability:
    """Whether a backend's package imports, its version, and how to install it if not."""

    available: bool
    version: str | None
    hint: str = ""
    versions: dict[str, str] = field(default_factory=dict)


def package_version(distribution: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class PreparedBase:
    """What a prepared particle tracker (:class:`Prepared`) and a prepared envelope tracker
    (:class:`PreparedEnvelope`) share: the model label, threads, compiled-path facts,
    ``synchronize`` and ``close``."""

    #: What is run: :func:`model_signature` of the scenario when the backend runs exactly the
    #: scenario's model, or ``stand-in:<description>`` when it runs a named stand-in.
    model: str = ""
    #: Threads the backend uses for tracking.
    threads: int = 1
    #: Compiled-path facts (the ``compiled``, ``compile_s``, ``compile_error`` columns):
    #: whether compiled code ran (None: the backend has no compiled path, the columns are
    #: left out), seconds spent compiling (in the warm-up), why compilation fell back.
    compiled: bool | None = None
    compile_s: float = 0.0
    compile_error: str = ""

    def synchronize(self) -> None:
        """Wait for asynchronous device work (CUDA) to finish; synchronous codes need not."""
        return None

    def close(self) -> None:
        """Release the code's resources; codes without any need not."""
        return None


class Prepared(PreparedBase, ABC):
    """A scenario translated for one backend, device and dtype, ready to track."""

    @abstractmethod
    def inject(self, particles: np.ndarray) -> Any:
        """Hand ``(N, 6)`` float64 particles (``(N, 9)`` with spins) to the code (not
        timed)."""

    @abstractmethod
    def run(self, handle: Any) -> Any:
        """Track the injected particles through the lattice (the timed part)."""

    @abstractmethod
    def extract(self, handle: Any) -> np.ndarray:
        """Final particles as ``(N, 6)`` (``(N, 9)`` with spins) float64 numpy, in the order
        they were injected."""

    def track(self, particles: np.ndarray) -> np.ndarray:
        """inject -> run -> extract."""
        handle = self.run(self.inject(particles))
        self.synchronize()
        return self.extract(handle)

    def __enter__(self) -> Prepared:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PreparedEnvelope(PreparedBase, ABC):
    """A lattice ready for envelope tracking (``tracking: envelope``): the 6x6 covariance
    matrix of (x [m], px, y [m], py, t [m], pt), ImpactX's coordinates, carried through
    it. :meth:`run` is the timed part; ``model``, ``threads`` and the compiled-path facts
    are as :class:`Prepared`'s."""

    @abstractmethod
    def run(self, sigma: np.ndarray) -> Any:
        """Track the initial covariance ``sigma`` ((6, 6) float64) through the lattice; the
        code's final covariance (the timed part)."""

    def extract(self, result: Any) -> np.ndarray:
        """The final covariance as (6, 6) float64 numpy."""
        return np.array(result, dtype=np.float64)

    @classmethod
    @abstractmethod
    def from_plan(cls, plan: Plan) -> PreparedEnvelope:
        """The envelope tracker of a backend's plan (``tracking: envelope``)."""

    def track(self, sigma: np.ndarray) -> np.ndarray:
        """run -> synchronize -> extract."""
        result = self.run(sigma)
        self.synchronize()
        return self.extract(result)


class Backend(ABC):
    """An adapter for one tracking code."""

    #: Registry id (``impactx``, ``cheetah``, ``inhouse``).
    name: ClassVar[str]
    #: PyPI distribution that provides the code, and the hint shown when it is missing.
    distribution: ClassVar[str]
    install_hint: ClassVar[str] = ""
    #: Element kinds (PALS kinds, plus ``Aperture``) the adapter translates.
    element_kinds: ClassVar[frozenset[str]] = frozenset()
    #: Element fields (:data:`harness.model.vocabulary.ELEMENT_FIELDS`) the adapter honours, per
    #: kind: names or ``fnmatch`` patterns (``Kn*L``). None (an adapter that declares
    #: nothing) means the fields every element of a kind carries
    #: (:data:`harness.model.vocabulary.REQUIRED_FIELDS`). A scenario setting any other field
    #: is ``unsupported`` with the field named (:meth:`unhonoured_field`).
    honoured_fields: ClassVar[Mapping[str, frozenset[str]] | None] = None
    #: Kinds whose inverse element (``reverse: true`` in the scenario, a negative
    #: ``length`` in the model: :attr:`harness.model.kinds.KindSpec.reversible`) the adapter
    #: tracks as ImpactX does; a reversed element of any other kind is refused by name.
    reversible_kinds: ClassVar[frozenset[str]] = frozenset()
    #: Whether the backend can give gradients by automatic differentiation.
    differentiable: ClassVar[bool] = False
    #: Whether commands run it when no ``--backends`` are given (a variant whose every case
    #: costs minutes of compilation says False and runs when named).
    run_by_default: ClassVar[bool] = True
    #: Devices and dtypes the backend tracks on (None: the adapter checks them itself).
    devices: ClassVar[tuple[str, ...] | None] = None
    dtypes: ClassVar[tuple[str, ...] | None] = None
    #: Space-charge kinds (``3d``, ``2d``, ``2p5d``, ``gauss3d``, ``gauss2p5d``) it runs (None:
    #: the adapter checks; empty: none).
    space_charge_kinds: ClassVar[frozenset[str] | None] = None
    #: Whether the backend tracks spins (Thomas-BMT) with the particles: a scenario with a
    #: ``beam.spin`` block hands it ``(N, 9)`` particles (see the module docstring); the
    #: others refuse such a scenario with :attr:`spin_refusal`.
    spin_tracking: ClassVar[bool] = False
    spin_refusal: ClassVar[str] = "no spin tracking"
    #: Whether it applies its maps to the coordinates as given, so that probe particles
    #: (``beam.linear_probes``: pt = 1 and the like, no physical energy) cross a lattice of
    #: linear maps unchanged in meaning; the others refuse such a scenario by name.
    linear_probes: ClassVar[bool] = False
    #: The ``particle_boundary`` kinds it applies where ImpactX does (after every slice of
    #: every element); the others refuse a scenario with one by name.
    particle_boundaries: ClassVar[frozenset[str]] = frozenset()
    #: Tracking modes (``particles``, ``envelope``) it runs; ``envelope`` needs
    #: :meth:`prepare_envelope`. A scenario's ``tracking`` outside them is refused with
    #: :attr:`envelope_refusal` (or the modes it has).
    tracking_modes: ClassVar[frozenset[str]] = frozenset({"particles"})
    #: Why the code has no envelope mode (the reason of the refusal; "" for the default).
    envelope_refusal: ClassVar[str] = ""
    #: Envelope space-charge kinds (``2d``, ``3d``) its envelope mode runs.
    envelope_space_charge_kinds: ClassVar[frozenset[str]] = frozenset()
    #: ``module:Class`` of its :class:`PreparedEnvelope` (``Class.from_plan(plan)``), looked
    #: up by name as the registry looks up backends, so that an adapter and its envelope
    #: module (which builds on the adapter's translation) do not import each other.
    envelope_class: ClassVar[str] = ""
    #: Why an undeclared space-charge kind is not run (kind -> reason), added to the
    #: refusal of :meth:`common_checks`.
    space_charge_reasons: ClassVar[dict[str, str]] = {}
    #: Whether :meth:`prepare` takes a :class:`Plan` (else ``prepare(scenario, device,
    #: dtype)`` is called with the plan's case).
    takes_plans: ClassVar[bool] = False
    #: Math settings (:data:`MATH_MODES`) the backend runs: ``fast`` only where the code
    #: offers its compiler's fast-math flags at run time; the others are refused with
    #: :attr:`math_refusal` (:meth:`math_refused`).
    math_modes: ClassVar[frozenset[str]] = frozenset({IEEE})
    #: Why the code has no fast-math setting at run time ("" for the default reason).
    math_refusal: ClassVar[str] = ""

    @classmethod
    def availability(cls) -> Availability:
        """Whether the code imports, with its version (never raises)."""
        version = package_version(cls.distribution)
        if version is None:
            return Availability(False, None, cls.install_hint)
        try:
            cls._import()
        except Exception as error:  # noqa: BLE001 - any import failure means unavailable
            return Availability(False, version, f"{cls.install_hint} ({error})")
        return Availability(True, version, "", cls.dependency_versions())

    @classmethod
    def dependency_versions(cls) -> dict[str, str]:
        """Versions of the code and what it runs on (recorded with every result)."""
        out = {cls.distribution: package_version(cls.distribution) or "missing"}
        for dep in ("torch", "numpy"):
            version = package_version(dep)
            if version:
                out[dep] = version
        return out

    @classmethod
    @abstractmethod
    def _import(cls) -> None:
        """Import the code (raises when it is not usable)."""

    @classmethod
    def declared_fields(cls, kind: str) -> frozenset[str]:
        """Element fields (names or patterns) of ``kind`` this adapter honours."""
        if cls.honoured_fields is None:
            return REQUIRED_FIELDS.get(kind, frozenset())
        return frozenset(cls.honoured_fields.get(kind, frozenset()))

    @classmethod
    def unhonoured_field(cls, element: Any) -> Unsupported | None:
        """Unsupported naming the first field of ``element`` the adapter does not honour."""
        declared = cls.declared_fields(element.kind)
        for name in element.params:
            if not field_declared(declared, name):
                return Unsupported(
                    f"{cls.name} does not model {element.kind} field {name!r} "
                    f"({element.name} {name} = {element.params[name]:g}); it honours "
                    f"{sorted(declared)}")
        return None

    @classmethod
    def math_refused(cls, math: str) -> Unsupported | None:
        """Unsupported when the backend has no ``math`` setting (:attr:`math_modes`), with
        :attr:`math_refusal` as the reason; None when it runs it."""
        if math not in MATH_MODES:
            return Unsupported(f"math {math!r}: expected one of {list(MATH_MODES)}")
        if math in cls.math_modes:
            return None
        return Unsupported(f"math {math!r}: " + (
            cls.math_refusal or f"{cls.name} has no fast-math setting at run time (it runs "
                                f"{sorted(cls.math_modes)})"))

    def math_checks(self, scenario: Scenario, device: str, dtype: str,
                    math: str) -> Unsupported | None:
        """The adapter's own refusals of a math setting it declares (e.g. a scenario its
        fast path does not reach); None by default."""
        return None

    def with_math(self, plan: Plan | Unsupported, math: str) -> Plan | Unsupported:
        """A plan with the case's math setting (:attr:`Plan.math`), or why the backend does
        not run that setting (:meth:`math_refused`, then :meth:`math_checks`); an
        Unsupported plan as it is."""
        if isinstance(plan, Unsupported):
            return plan
        refused = self.math_refused(math)   # (an Unsupported is falsy: no `or` here)
        if refused is None:
            refused = self.math_checks(plan.scenario, plan.device, plan.dtype, math)
        if refused is not None:
            return refused
        return plan if plan.math == math else replace(plan, math=math)

    def plan_case(self, scenario: Scenario, device: str = "cpu", dtype: str = "float64",
                  math: str = IEEE) -> Plan | Unsupported:
        """:meth:`plan` of a case with its math setting: a setting the backend does not
        declare is refused before the scenario is translated."""
        refused = self.math_refused(math)
        if refused is not None:
            return refused
        return self.with_math(self.plan(scenario, device, dtype), math)

    def common_checks(self, scenario: Scenario, device: str = "cpu",
                      dtype: str = "float64", math: str = IEEE) -> Unsupported | None:
        """The checks every backend shares, from what it declares: element kinds, every
        field set honoured (:attr:`honoured_fields`), then the device, the dtype, the math
        setting (:attr:`math_modes`), spin tracking (:attr:`spin_tracking`) and the
        space-charge kind where the backend declares them; the first refusal, or None."""
        for element in scenario.elements:
            if element.kind not in self.element_kinds:
                note = extension_note(element.kind)
                return Unsupported(f"{self.name} does not translate element kind "
                                   f"{element.kind!r} ({element.name}){note}; it "
                                   f"translates {sorted(self.element_kinds)}")
            missing = self.unhonoured_field(element)
            if missing is not None:
                return missing
            if element.length < 0.0 and element.kind not in self.reversible_kinds:
                return Unsupported(
                    f"element {element.name!r} ({element.kind}): reverse: true (the inverse "
                    f"element, ImpactX's negative length) is not modelled by {self.name}"
                    + (f"; it reverses {sorted(self.reversible_kinds)}"
                       if self.reversible_kinds else ""))
        if self.devices is not None and device not in self.devices:
            return Unsupported(f"device {device!r}: {self.name} tracks on "
                               f"{' or '.join(self.devices)} only")
        if self.dtypes is not None and dtype not in self.dtypes:
            return Unsupported(f"dtype {dtype!r}: {self.name}'s particle data are "
                               f"{' or '.join(self.dtypes)}; {dtype} would only be a "
                               "conversion at the boundary")
        refused = self.math_refused(math)
        if refused is not None:
            return refused
        if getattr(scenario, "spin", False) and not self.spin_tracking:
            return Unsupported(f"beam.spin: {self.name}: {self.spin_refusal}")
        boundary = getattr(scenario, "particle_boundary", None)
        if boundary is not None and boundary.kind not in self.particle_boundaries:
            return Unsupported(f"particle_boundary {boundary.kind!r}: {self.name} applies no "
                               "longitudinal particle boundary (ImpactX's algo.particle_bc)")
        beam = getattr(scenario, "beam", None)
        if getattr(beam, "linear_probes", False) and not self.linear_probes:
            return Unsupported(f"beam.linear_probes: {self.name} converts each particle's "
                               "coordinates with its energy, which a probe particle (pt = 1 "
                               "and the like) does not have")
        tracking = getattr(scenario, "tracking", "particles")
        if tracking not in self.tracking_modes:
            return Unsupported(f"tracking {tracking!r}: " + (
                self.envelope_refusal if tracking == "envelope" and self.envelope_refusal
                else f"{self.name} has no {tracking} tracking mode (it runs "
                     f"{sorted(self.tracking_modes)})"))
        esc = getattr(scenario, "envelope_space_charge", None)
        if esc is not None and esc.kind not in self.envelope_space_charge_kinds:
            if not self.envelope_space_charge_kinds:
                return Unsupported(f"envelope_space_charge {esc.kind!r}: {self.name}'s "
                                   "envelope mode has no space-charge model")
            return Unsupported(f"envelope_space_charge {esc.kind!r}: {self.name} runs "
                               f"{sorted(self.envelope_space_charge_kinds)} only")
        sc = scenario.space_charge
        if sc is not None and self.space_charge_kinds is not None \
                and sc.kind not in self.space_charge_kinds:
            if not self.space_charge_kinds:
                return Unsupported(f"{self.name} has no space-charge model")
            why = self.space_charge_reasons.get(sc.kind)
            return Unsupported(f"space charge {sc.kind!r}: {self.name} runs "
                               f"{sorted(self.space_charge_kinds)} only"
                               + (f" ({why})" if why else ""))
        return None

    def supports(self, scenario: Scenario, device: str = "cpu",
                 dtype: str = "float64") -> Supported | Unsupported:
        """Whether this backend can run the scenario: an adapter that plans (overrides
        :meth:`plan`) answers with its plan (a :class:`Plan` is a :class:`Supported`), else
        :meth:`common_checks` and the scenario's own model."""
        if type(self).plan is not Backend.plan:
            return self.plan(scenario, device, dtype)
        refused = self.common_checks(scenario, device, dtype)
        if refused is not None:
            return refused
        return Supported(model_signature(scenario))

    def plan(self, scenario: Scenario, device: str = "cpu",
             dtype: str = "float64") -> Plan | Unsupported:
        """Decide once whether and how the backend runs the case. The default asks the
        adapter's own :meth:`supports` (or, without one, :meth:`common_checks`); an adapter
        that translates ahead overrides this and puts its translated lattice in
        :attr:`Plan.lattice`."""
        if type(self).supports is Backend.supports:
            refused = self.common_checks(scenario, device, dtype)
            verdict: Supported | Unsupported = (
                refused if refused is not None else Supported(model_signature(scenario)))
        else:
            verdict = self.supports(scenario, device, dtype)
        if isinstance(verdict, Plan) or not verdict:
            return verdict
        return Plan(verdict.model, verdict.note, scenario, device, dtype)

    def planned(self, what: Scenario | Plan, device: str = "cpu",
                dtype: str = "float64") -> Plan:
        """``what`` if it is a plan, else :meth:`plan` of the scenario; ValueError with the
        reason when the backend cannot run it."""
        plan = what if isinstance(what, Plan) else self.plan(what, device, dtype)
        if isinstance(plan, Unsupported):
            raise ValueError(plan.reason)
        return plan

    def prepare_planned(self, plan: Plan) -> Prepared:
        """The prepared tracker of a plan, without deciding again (a backend with the older
        ``prepare(scenario, device, dtype)`` is given the plan's case); for an envelope
        scenario (``tracking: envelope``) the :class:`PreparedEnvelope` of
        :meth:`prepare_envelope`."""
        if getattr(plan.scenario, "tracking", "particles") == "envelope":
            return self.prepare_envelope(plan)  # type: ignore[return-value]
        if self.takes_plans:
            return self.prepare(plan)
        return self.prepare(plan.scenario, plan.device, plan.dtype)

    @abstractmethod
    def prepare(self, scenario: Any, device: str = "cpu",
                dtype: str = "float64") -> Prepared:
        """Translate the scenario (or build a :class:`Plan`, for a backend that
        :attr:`takes_plans`); call only after :meth:`supports` or :meth:`plan` said yes."""

    def prepare_envelope(self, plan: Plan) -> PreparedEnvelope:
        """The envelope tracker of a plan of an envelope scenario: ``from_plan(plan)`` of
        the class :attr:`envelope_class` names."""
        import importlib

        if not self.envelope_class:
            raise NotImplementedError(f"{self.name} has no envelope tracking mode")
        module, _, name = self.envelope_class.partition(":")
        made = getattr(importlib.import_module(module), name).from_plan(plan)
        assert isinstance(made, PreparedEnvelope)
        return made

    def prepare_single_use(self, scenario: Any, device: str = "cpu",
                           dtype: str = "float64") -> Prepared:
        """Prepare a lattice that is tracked once (e.g. a finite-difference evaluation).

        The same as :meth:`prepare` unless a backend overrides it: one that compiles each
        lattice skips compilation here, because it pays only over repeated tracks.
        ``scenario`` may be a :class:`Plan` (prepared from without deciding again)."""
        if isinstance(scenario, Plan) and not self.takes_plans:
            return self.prepare(scenario.scenario, scenario.device, scenario.dtype)
        return self.prepare(scenario, device, dtype)

    def differentiable_observables(self, scenario: Scenario | Plan, parameters: list[str],
                                   names: list[str], particles: np.ndarray, device: str,
                                   dtype: str) -> Any:
        """Observables at the lattice end as differentiable functions of named parameters,
        from one track, or None.

        ``scenario`` may be the case's :class:`Plan` (a backend that builds from a plan
        does not decide or translate again; its :attr:`Plan.scenario` is the scenario).
        None (the default) means the backend gives no AD gradient (finite differences only).
        A differentiable backend returns ``(g, theta0)``: ``theta0`` a 1D torch tensor of
        the scenario's values of ``parameters`` (names of :mod:`harness.model.parameters`, units
        of the scenario file) and ``g(theta)`` a dict of the observables ``names``
        (:mod:`harness.model.observables`) at the lattice end, each a 0-d tensor, all from one
        track, differentiable in reverse and forward mode (one backward pass through all
        of them). ``g`` tracks the given ``(N, 6)`` initial ``particles`` for element
        parameters; for beam parameters it draws the particles inside the graph by
        reparameterised sampling (:func:`harness.model.particles.generate_torch`, the scenario's
        seed, ``N`` particles).
        """
        return None

    def objective(self, scenario: Scenario | Plan, parameters: list[str], objective: str,
                  particles: np.ndarray, device: str, dtype: str) -> Any:
        """One observable of :meth:`differentiable_observables`: ``(f, theta0)`` with
        ``f(theta)`` the observable ``objective`` as a 0-d tensor, or None (no AD)."""
        made = self.differentiable_observables(scenario, parameters, [objective], particles,
                                               device, dtype)
        if made is None:
            return None
        observe, theta0 = made
        return (lambda theta: observe(theta)[objective]), theta0


def extension_note(kind: str) -> str:
    """Why a code without ImpactX's map refuses an extension kind (``ImpactX.<X>``,
    :data:`harness.model.kinds.EXTENSION_NAMESPACE`), else ``""``."""
    if not kind.startswith(EXTENSION_NAMESPACE):
        return ""
    return (f": {kind.removeprefix(EXTENSION_NAMESPACE)} is ImpactX's own element, not a "
            "PALS kind; its code has no element with the same map (only ImpactX and the "
            "in-house port of ImpactX's map model it)")


def field_table(kinds: Iterable[str], **extra: Iterable[str]) -> dict[str, frozenset[str]]:
    """An adapter's honoured-field table: the fields every element of each of ``kinds``
    carries (:data:`harness.model.vocabulary.REQUIRED_FIELDS`) plus, per kind, the ``extra``
    names or patterns it also translates (e.g. ``Multipole=("Kn*L", "Ks*L")``)."""
    return {kind: REQUIRED_FIELDS.get(kind, frozenset()) | frozenset(extra.get(kind, ()))
            for kind in kinds}


def translate_element(backend: type[Backend], element: Any,
                      translators: Mapping[str, Any],
                      refused_kinds: Mapping[str, Any] | None = None) -> Any:
    """One element through an adapter's kind -> translator table: a kind the adapter
    refuses outright gives its own reason (``refused_kinds[kind](element)``), a kind
    without a translator and a field the adapter does not honour are ``Unsupported`` by
    name, else the translator's result."""
    refuse = (refused_kinds or {}).get(element.kind)
    if refuse is not None:
        return refuse(element)
    translator = translators.get(element.kind)
    if translator is None:
        note = extension_note(element.kind)
        return Unsupported(f"{backend.name} does not translate element kind "
                           f"{element.kind!r} ({element.name}){note}")
    missing = backend.unhonoured_field(element)
    if missing is not None:
        return missing
    return translator(element)


def final_particles(coordinates: np.ndarray, lost: np.ndarray | None = None,
                    stopped: np.ndarray | None = None) -> np.ndarray:
    """Final ``(N, 6)`` particles in the harness's convention (see the module docstring).

    Args:
        coordinates: ``(N, 6)`` final coordinates as the code returned them (ImpactX units).
        lost: boolean mask of the particles lost at an aperture of the scenario (None: none);
            their rows become NaN.
        stopped: boolean mask of the particles the code stopped for any other reason (an
            amplitude limit of the code, a non-finite coordinate it caught); they are blow-ups.

    Returns:
        A float64 copy: lost rows all NaN; a blow-up whose coordinates are all NaN (or that
        the code stopped) becomes a row of +inf, so that it is counted as ``blown_up``, never
        as ``lost``.
    """
    out = np.array(coordinates, dtype=np.float64, copy=True)
    count = len(out)
    lost_mask = np.zeros(count, bool) if lost is None else np.asarray(lost, bool)
    stopped_mask = np.zeros(count, bool) if stopped is None else np.asarray(stopped, bool)
    unreadable = stopped_mask | np.isnan(out).all(axis=1)
    out[unreadable & ~lost_mask] = np.inf
    out[lost_mask] = np.nan
    return out


def translate_line(elements: Iterable[Any], translate: Any,
                   stand_ins: Iterable[str] = ()) -> tuple[list[tuple[str, Any]], list[str]] | Any:
    """Every element through ``translate`` (one element -> a result with ``specs`` and
    ``stand_in``, or Unsupported): ``([(unique name, spec), ...], stand-in descriptions)``,
    or the first element's Unsupported."""
    specs: list[tuple[str, Any]] = []
    described = list(stand_ins)
    for index, element in enumerate(elements):
        result = translate(element)
        if isinstance(result, Unsupported):
            return result
        for k, spec in enumerate(result.specs):
            specs.append((f"{element.name}_{index}_{k}", spec))
        if result.stand_in and result.stand_in not in described:
            described.append(result.stand_in)
    return specs, described


def compile_failure(error: Exception, first: bool) -> str:
    """The ``compile_error`` line (exception class and first line, 300 characters at most)
    of a compiler failure on the first call of a compiled path, which then falls back to
    eager code; a failure on a later call is re-raised (it is not the compiler's)."""
    if not first:
        raise error
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def int_order_note(element: Any) -> str:
    """``" int_order N"`` for an element ImpactX integrates
    (:attr:`harness.model.lattice.Element.integrated`) at an order N other than its default
    2, else ``""``: an adapter that runs such an element with its own integrator puts it in
    the element's stand-in description (``ExactQuad int_order 4->...``), so a stated order
    is never silently replaced."""
    if not getattr(element, "integrated", False) or element.int_order == 2:
        return ""
    return f" int_order {element.int_order}"
