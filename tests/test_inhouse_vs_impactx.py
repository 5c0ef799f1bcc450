"""The in-house tracker against ImpactX, particle by particle (fp64, same initial particles).

Agreement = max over particles and coordinates of |in-house - ImpactX| / std(ImpactX
coordinate). Bundled scenarios run through ``backends.impactx`` when that adapter is present,
else through the minimal driver below (docs/conventions.md §2: inject with ``add_n_particles``, read
back with ``to_df`` sorted by particle id). Single elements not used by any bundled scenario
(solenoid, RF gap, combined-function and exact bends, skew multipoles, apertures) are
checked with the driver at three energies.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from backends.impactx_spin import weight_ordered
from backends.inhouse import multipole, quadrupole
from backends.inhouse.reference import RefState
from backends.inhouse.tracker import Tracker
from harness.model.lattice import Element
from harness.model.load import load_scenario
from harness.model.particles import generate
from harness.model.reference_particle import ReferenceParticle

impactx = pytest.importorskip("impactx")

N_PARTICLES = 10_000

#: Agreement bound per scenario (max |dev| / sigma): round-off for linear and paraxial maps,
#: 1e-9 for the exact ones (square roots and arcsines of nearly cancelling terms).
SCENARIO_BOUNDS = {
    "fodo_linear": 1e-11,
    "fodo_paraxial": 1e-11,
    "fodo_exact": 1e-9,
    "chicane": 1e-11,
    "fodo_sextupole": 1e-11,
}


def impactx_elements(elements: list[Element], reference: ReferenceParticle) -> list:
    """ImpactX elements for harness elements (the translation table of
    ``backends.inhouse.translate``, written independently against ImpactX's Python API)."""
    from impactx import elements as ix

    out = []
    for e in elements:
        p, length = e.params, e.length
        if e.kind in ("Drift", "Instrument"):
            if length != 0.0:
                cls = {"linear": ix.Drift, "paraxial": ix.ChrDrift, "exact": ix.ExactDrift}
                out.append(cls[e.tier](ds=length, nslice=e.nslice))
        elif e.kind == "Quadrupole":
            if e.tier == "exact":
                out.append(ix.ExactQuad(ds=length, k=p["Kn1"], mapsteps=e.mapsteps,
                                        nslice=e.nslice))
            else:
                cls = ix.Quad if e.tier == "linear" else ix.ChrQuad
                out.append(cls(ds=length, k=p["Kn1"], nslice=e.nslice))
        elif e.kind == "SBend":
            rc = length / p["angle"]
            if p.get("e1", 0.0):
                out.append(ix.DipEdge(psi=p["e1"], rc=rc, g=0.0, K2=0.0))
            if e.tier == "exact":
                out.append(ix.ExactSbend(ds=length, phi=math.degrees(p["angle"]),
                                         nslice=e.nslice))
            elif "Kn1" in p:
                out.append(ix.CFbend(ds=length, rc=rc, k=p["Kn1"], nslice=e.nslice))
            else:
                out.append(ix.Sbend(ds=length, rc=rc, nslice=e.nslice))
            if p.get("e2", 0.0):
                out.append(ix.DipEdge(psi=p["e2"], rc=rc, g=0.0, K2=0.0))
        elif e.kind == "Sextupole":
            out.append(ix.ExactMultipole(ds=length, k_normal=[0.0, 0.0, p["Kn2"]],
                                         k_skew=[0.0, 0.0, 0.0], mapsteps=e.mapsteps,
                                         nslice=e.nslice))
        elif e.kind == "Multipole":
            orders = sorted({int(k[2:-1]) for k in p if k[:2] in ("Kn", "Ks") and k[-1] == "L"})
            out.extend(ix.Multipole(multipole=n + 1, K_normal=p.get(f"Kn{n}L", 0.0),
                                    K_skew=p.get(f"Ks{n}L", 0.0)) for n in orders)
        elif e.kind == "Solenoid":
            out.append(ix.Sol(ds=length, ks=p["Ksol"], nslice=e.nslice))
        elif e.kind == "RFCavity":
            volts = abs(reference.charge_qe) * p["voltage"] / reference.mass_eV
            out.append(ix.ShortRF(V=volts, freq=p["frequency"], phase=math.degrees(p["phase"])))
        elif e.kind == "Aperture":
            shape = "elliptical" if p["elliptical"] else "rectangular"
            out.append(ix.Aperture(aperture_x=p["x_limit"], aperture_y=p["y_limit"],
                                   shape=shape))
        elif e.kind != "Marker":
            raise ValueError(f"no ImpactX element for {e.kind}")
    return out


def track_impactx(elements: list[Element], reference: ReferenceParticle,
                  particles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Track harness elements with ImpactX (see :func:`run_impactx`)."""
    return run_impactx(impactx_elements(elements, reference), reference, particles)


def run_impactx(lattice: list, reference: ReferenceParticle,
                particles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Track with ImpactX elements; returns the surviving particles in injection order and
    their indices into ``particles`` (carried through ImpactX as the particle weights 1..N,
    which its maps never change without space charge)."""
    from impactx import ImpactX

    sim = ImpactX()
    sim.verbose = 0
    sim.tiny_profiler = False
    sim.diagnostics = False
    sim.space_charge = False
    sim.init_grids()
    if callable(lattice):   # elements built once AMReX is initialised
        lattice = lattice()
    ref = sim.beam.ref
    ref.set_species(reference.species).set_kin_energy_MeV(reference.kinetic_energy_MeV)
    qm_eev = ref.charge_qe / (ref.mass_MeV * 1e6)
    x, px, y, py, t, pt = (np.ascontiguousarray(c) for c in particles.T)
    index_weights = np.arange(1.0, len(particles) + 1.0)
    sim.beam.add_n_particles(x, y, t, px, py, pt, qm_eev, w=index_weights)
    sim.lattice.extend(lattice)
    sim.track_particles()
    frame = sim.beam.to_df(local=True)
    sim.finalize()
    out, index, _ = weight_ordered(frame)
    return out, index


def track_scenario_impactx(scenario, particles: np.ndarray) -> np.ndarray:
    """ImpactX's final particles of a bundled scenario (through ``backends.impactx`` when it
    exists, else the driver above)."""
    if importlib.util.find_spec("backends.impactx") is not None:
        from backends.impactx import BACKEND

        with BACKEND().prepare(scenario, "cpu", "float64") as prepared:
            return prepared.track(particles)
    out, _ = track_impactx(scenario.elements, scenario.reference_particle, particles)
    return out


def deviation(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / std(theirs), worst coordinate."""
    return float((np.abs(ours - theirs).max(axis=0) / theirs.std(axis=0)).max())


@pytest.mark.parametrize("name", list(SCENARIO_BOUNDS))
def test_scenario_particle_by_particle(name):
    scenario = load_scenario(name)
    particles = generate(scenario.beam, N_PARTICLES)
    reference = track_scenario_impactx(scenario, particles)
    tracker = Tracker(scenario.elements, scenario.reference_particle)
    ours, alive = tracker.track(torch.from_numpy(particles))
    assert alive is None or bool(alive.all())
    dev = deviation(ours.numpy(), reference)
    print(f"{name}: max |dev|/sigma = {dev:.2e}")
    assert dev <= SCENARIO_BOUNDS[name]


def _element(name, kind, tier="linear", nslice=1, mapsteps=10, **params) -> Element:
    return Element(name, kind, params, tier, tier, nslice, mapsteps)


#: Lattices of element maps that no bundled scenario uses, with their agreement bound.
ELEMENT_CASES = {
    "exact_bend_edges": ([
        _element("b", "SBend", "exact", length=0.5, angle=0.1, e1=0.03, e2=0.05),
        _element("d", "Drift", "exact", length=1.0)], 1e-9),
    "exact_bend_3_slices": ([
        _element("b", "SBend", "exact", nslice=3, length=0.5, angle=-0.2, e1=0.0, e2=0.0)],
        1e-9),
    "cfbend": ([_element("b", "SBend", length=0.5, angle=0.1, e1=0.02, e2=0.0, Kn1=0.7)],
               1e-11),
    "solenoid": ([_element("s", "Solenoid", length=0.7, Ksol=1.3),
                  _element("d", "Drift", length=1.0)], 1e-11),
    "short_rf": ([
        _element("d0", "Drift", "paraxial", length=0.5),
        _element("rf", "RFCavity", length=0.0, voltage=2e7, frequency=1.3e9, phase=-0.5),
        _element("d1", "Drift", "paraxial", length=1.0),
        _element("q", "Quadrupole", "paraxial", length=0.5, Kn1=2.0)], 1e-10),
    "thin_multipoles": ([
        _element("m", "Multipole", length=0.0, Kn0L=1e-4, Kn1L=0.3, Ks1L=0.1, Kn2L=50.0,
                 Ks3L=1000.0),
        _element("d", "Drift", length=1.0)], 1e-11),
    "exact_quad_2x5_steps": ([
        _element("q", "Quadrupole", "exact", nslice=2, mapsteps=5, length=1.0, Kn1=-2.0)],
        1e-9),
    "aperture": ([_element("d", "Drift", length=1.0),
                  _element("a", "Aperture", length=0.0, x_limit=1.5e-4, y_limit=1e-4,
                           elliptical=1.0)], 1e-11),
}

ENERGIES = {
    "e-2GeV": ReferenceParticle("electron", 2000.0),
    "p800MeV": ReferenceParticle("proton", 800.0),
    "e-5MeV": ReferenceParticle("electron", 5.0),
}


@pytest.fixture(scope="module")
def element_particles() -> np.ndarray:
    rng = np.random.default_rng(20251125)
    return rng.standard_normal((N_PARTICLES, 6)) * np.array([1e-4, 2e-5, 1e-4, 2e-5, 1e-4,
                                                               1e-3])


@pytest.mark.parametrize("energy", list(ENERGIES))
@pytest.mark.parametrize("case", list(ELEMENT_CASES))
def test_element_particle_by_particle(case, energy, element_particles):
    elements, bound = ELEMENT_CASES[case]
    reference = ENERGIES[energy]
    theirs, kept = track_impactx(elements, reference, element_particles)
    ours, alive = Tracker(elements, reference).track(torch.from_numpy(element_particles))
    ours = ours.numpy()
    if alive is not None:
        survivors = np.flatnonzero(alive.numpy())
        np.testing.assert_array_equal(survivors, kept)
        ours = ours[survivors]
        if case == "aperture":
            assert 0 < len(survivors) < len(element_particles)
    dev = deviation(ours, theirs)
    print(f"{case} @ {energy}: max |dev|/sigma = {dev:.2e}")
    assert dev <= bound


@pytest.mark.parametrize("order", [2, 4, 6])
def test_integrator_orders(order, element_particles):
    """ExactQuad and ExactMultipole (normal and skew quadrupole, sextupole, octupole) with
    ImpactX's second-, fourth- and sixth-order integrators (``int_order``)."""
    from impactx import elements as ix

    reference = ENERGIES["p800MeV"]
    state = RefState.from_reference(reference)
    columns = tuple(torch.from_numpy(element_particles).T.contiguous())
    strengths = ((1, 0.5, 0.2), (2, 40.0, -10.0), (3, 300.0, 0.0))
    cases = [
        (quadrupole.exact_quad_kernel(0.8, 1.7, state, 3, order),
         ix.ExactQuad(ds=0.8, k=1.7, mapsteps=3, nslice=1, int_order=order)),
        (multipole.exact_multipole_kernel(0.3, strengths, state, 3, order),
         ix.ExactMultipole(ds=0.3, k_normal=[0.0, 0.5, 40.0, 300.0],
                           k_skew=[0.0, 0.2, -10.0, 0.0], mapsteps=3, nslice=1,
                           int_order=order)),
    ]
    for kernel, impactx_element in cases:
        ours = torch.stack(kernel.push(columns, kernel.coeffs), dim=1).numpy()
        theirs, _ = run_impactx([impactx_element], reference, element_particles)
        assert deviation(ours, theirs) <= 1e-11


#: Element fields translated since the first adapters (kicker, body offsets and rotation,
#: bend tilt and edge fringe integrals, skew sextupole), with their agreement bound. ImpactX
#: runs the elements of the ImpactX adapter's translation table.
FIELD_CASES = {
    "kicker_thin_rotated": ([
        _element("k", "Kicker", length=0.0, Kn0L=1e-4, Ks0L=-2e-4, z_rot=0.3),
        _element("d", "Drift", length=1.0)], 1e-11),
    "kicker_thick_exact": ([
        _element("k", "Kicker", "exact", length=0.4, Kn0L=-3e-5, Ks0L=5e-5, x_offset=1e-3)],
        1e-9),
    "quad_offset_rotated_linear": ([
        _element("q", "Quadrupole", length=0.5, Kn1=2.0, x_offset=1e-4, y_offset=-2e-4,
                 z_rot=0.2), _element("d", "Drift", length=1.0)], 1e-11),
    "quad_rotated_paraxial": ([
        _element("q", "Quadrupole", "paraxial", length=0.5, Kn1=-1.5, z_rot=-0.4)], 1e-11),
    "skew_quad_paraxial": ([
        _element("q", "Quadrupole", "paraxial", length=0.5, Kn1=-1.5, Ks1=0.6, y_offset=1e-4)],
        1e-11),
    "skew_quad_linear": ([
        _element("q", "Quadrupole", length=0.5, Kn1=0.0, Ks1=0.8, z_rot=0.1)], 1e-11),
    "quad_multipoles_exact": ([
        _element("q", "Quadrupole", "exact", length=0.5, Kn1=1.5, Ks1=0.2, Kn2=30.0,
                 Ks3=-200.0, Kn0=1e-4, x_offset=1e-4, z_rot=0.1)], 1e-9),
    "sextupole_octupole_exact": ([
        _element("s", "Sextupole", "exact", length=0.3, Kn2=40.0, Kn3=500.0, Ks1=0.1)],
        1e-9),
    "quad_offset_exact": ([
        _element("q", "Quadrupole", "exact", length=0.5, Kn1=1.5, x_offset=-2e-4,
                 y_offset=1e-4, z_rot=0.1)], 1e-9),
    "sextupole_skew_offset": ([
        _element("s", "Sextupole", "exact", length=0.3, Kn2=40.0, Ks2=-15.0, x_offset=1e-4,
                 y_offset=5e-5, z_rot=0.25)], 1e-9),
    "solenoid_offset_rotated": ([
        _element("s", "Solenoid", length=0.7, Ksol=1.3, x_offset=2e-4, y_offset=-1e-4,
                 z_rot=0.5)], 1e-11),
    "multipole_offset": ([
        _element("m", "Multipole", length=0.0, Kn1L=0.3, Kn2L=40.0, x_offset=1e-4,
                 z_rot=0.1), _element("d", "Drift", length=1.0)], 1e-11),
    "drift_offset_exact": ([
        _element("d", "Drift", "exact", length=1.0, x_offset=1e-3, y_offset=2e-3,
                 z_rot=0.7)], 1e-9),
    "bend_fringe_tilt_linear": ([
        _element("b", "SBend", length=0.5, angle=0.1, e1=0.03, e2=0.0, edge_int1=0.02,
                 edge_int2=0.01, tilt_ref=0.3), _element("d", "Drift", length=1.0)], 1e-11),
    "cfbend_fringe_tilt": ([
        _element("b", "SBend", length=0.5, angle=-0.1, e1=0.0, e2=0.04, Kn1=0.5,
                 edge_int1=0.015, edge_int2=0.015, tilt_ref=1.2)], 1e-11),
    "bend_fringe_tilt_exact": ([
        _element("b", "SBend", "exact", length=0.5, angle=0.2, e1=0.05, e2=0.02,
                 edge_int1=0.02, edge_int2=0.03, tilt_ref=-0.6)], 1e-9),
}


@pytest.mark.parametrize("energy", ["e-2GeV", "e-5MeV"])
@pytest.mark.parametrize("case", list(FIELD_CASES))
def test_new_fields_particle_by_particle(case, energy, element_particles):
    """The in-house maps of kickers, misaligned elements, tilted bends with fringe fields
    and skew sextupoles agree with ImpactX's particle by particle."""
    from impactx import elements as ix

    from backends.impactx import translate

    elements, bound = FIELD_CASES[case]
    reference = ENERGIES[energy]

    def lattice() -> list:
        return [spec.build(ix) for e in elements for spec in translate(e, reference)]

    theirs, kept = run_impactx(lattice, reference, element_particles)
    assert len(kept) == len(element_particles)
    ours, alive = Tracker(elements, reference).track(torch.from_numpy(element_particles))
    assert alive is None or bool(alive.all())
    dev = deviation(ours.numpy(), theirs)
    print(f"{case} @ {energy}: max |dev|/sigma = {dev:.2e}")
    assert dev <= bound


@pytest.mark.parametrize("name", ["fodo_paraxial", "fodo_exact", "chicane"])
def test_beam_centroid_is_tracked_particle_by_particle(name):
    """A beam with a centroid (1 % mean momentum offset, pt = -beta0 * 1e-2, and a
    transverse offset) is drawn shifted and tracked by ImpactX and the in-house tracker to
    the same particles; its final centroid differs from the centred beam's (the chromatic
    and dispersive maps see the offset)."""
    import yaml

    from harness.model.load import resolve_scenario_path, scenario_from_dict

    scenario = load_scenario(name)
    path = resolve_scenario_path(name)
    data = yaml.safe_load(path.read_text())
    beta0 = scenario.reference_particle.beta
    data["beam"]["centroid"] = {"x": 2e-4, "px": -1e-5, "pt": -beta0 * 1e-2}
    shifted = scenario_from_dict(data, path)
    centred = generate(scenario.beam, 500)
    particles = generate(shifted.beam, 500)
    offset = np.array([2e-4, -1e-5, 0.0, 0.0, 0.0, -beta0 * 1e-2])
    assert np.array_equal(particles, centred + offset)
    reference = track_scenario_impactx(shifted, particles)
    ours, _ = Tracker(shifted.elements, shifted.reference_particle).track(
        torch.from_numpy(particles))
    assert deviation(ours.numpy(), reference) <= SCENARIO_BOUNDS[name]
    plain = track_scenario_impactx(scenario, centred)
    moved = np.abs(reference.mean(axis=0) - plain.mean(axis=0) - offset) / plain.std(axis=0)
    assert moved.max() > 1e-3
