"""Bmad and elegant files through Cheetah's readers (Cheetah's own test files, copied under
tests/data), Cheetah Segments and ImpactX element lists built in Python."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backends.inhouse.transfer_map import linear_map
from harness.io.cheetah_segment import import_segment
from harness.io.importer import import_elements, import_lattice
from harness.io.model import ImportRefused, apply_policy
from harness.io.pals_doc import BeamSpec
from harness.model.load import scenario_from_dict
from tests.io_helpers import DATA, impactx_vs_inhouse, madx_file_matrix

cheetah = pytest.importorskip("cheetah")


def test_elegant_fodo_imports_and_tracks():
    imported = import_lattice(DATA / "cheetah_fodo.lte", species="electron", energy_MeV=100.0)
    scenario = scenario_from_dict(imported.data)
    assert [e.kind for e in scenario.elements] == [
        "Marker", "Quadrupole", "Drift", "Marker", "SBend", "Drift", "Quadrupole", "Drift"]
    q2 = next(e for e in scenario.elements if e.name == "q2")
    assert q2.params == {"length": 0.2, "Kn1": -3.0}
    assert any(n.startswith("charge c: beam property element") for n in imported.result.notes)
    assert scenario.length == pytest.approx(4.6, abs=1e-15)


@pytest.mark.impactx
def test_elegant_fodo_tracks_the_same_in_impactx_and_inhouse():
    pytest.importorskip("impactx")
    imported = import_lattice(DATA / "cheetah_fodo.lte", species="electron", energy_MeV=100.0)
    assert impactx_vs_inhouse(scenario_from_dict(imported.data)) < 1e-11


def test_elegant_fodo_map_is_cheetahs():
    """The imported lattice's linear map against Cheetah's own of the file's segment."""
    import torch

    imported = import_lattice(DATA / "cheetah_fodo.lte", species="electron", energy_MeV=100.0)
    scenario = scenario_from_dict(imported.data)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # Cheetah's defaults (misalignment) follow it
    try:
        segment = cheetah.Segment.from_elegant(str(DATA / "cheetah_fodo.lte"), "fodo")
    finally:
        torch.set_default_dtype(default)
    from backends.cheetah import cheetah_species

    species = cheetah_species(scenario.reference_particle)
    energy = torch.tensor(scenario.reference_particle.total_energy_eV, dtype=torch.float64)
    ours = linear_map(scenario).numpy()
    theirs = segment.first_order_transfer_map(energy, species).numpy()[:6, :6]
    # Cheetah's (tau, p) = ImpactX's (t, -pt)
    signs = np.diag([1.0, 1, 1, 1, 1, -1])
    assert np.max(np.abs(ours - signs @ theirs @ signs)) < 1e-12


def test_bmad_tutorial_names_what_cheetah_does_not_understand():
    with pytest.raises(ImportRefused) as error:
        import_lattice(DATA / "cheetah_bmad_tutorial_lattice.bmad")
    message = str(error.value)
    # Cheetah's Bmad reader ignores g (the bend would be a drift) and the sextupole is tilted
    assert "sbend x1 (property g is not understood by Cheetah's bmad reader; e.g. b)" in message
    assert "Sextupole x1 (a tilted or misaligned sextupole is not translated; e.g. s)" in message


def test_bmad_negative_drift_cannot_be_replaced():
    message = "Drift n cannot be replaced: a negative length"
    with pytest.raises(ImportRefused, match=message):
        import_lattice(DATA / "cheetah_bmad_tutorial_lattice.bmad", on_unsupported="drift")


def test_bmad_beam_from_the_file(tmp_path):
    """The tutorial's beam and elements without its negative drift (PALS lengths are >= 0)."""
    text = (DATA / "cheetah_bmad_tutorial_lattice.bmad").read_text()
    path = tmp_path / "tutorial.bmad"
    path.write_text(text.replace("lat: line = (d, b, n, q, s)", "lat: line = (d, b, q, s)"))
    imported = import_lattice(path, on_unsupported="drift")
    beam = imported.data["beam"]
    assert beam["species"] == "electron"
    assert beam["kinetic_energy_MeV"] == pytest.approx(10.0 - 0.510998950691753, rel=1e-14)
    scenario = scenario_from_dict(imported.data)
    assert [(e.name, e.kind) for e in scenario.elements] == [
        ("d", "Drift"), ("b", "Drift"), ("q", "Quadrupole"), ("s", "Drift")]
    assert scenario.length == pytest.approx(0.5 + 0.5 + 0.6 + 0.3, abs=1e-15)


def test_elegant_thick_cavity_is_untranslatable():
    with pytest.raises(ImportRefused, match=r"rfca x1 \(property change_p0 is not understood"):
        import_lattice(DATA / "cheetah_cavity.lte", species="electron", energy_MeV=100.0)


def test_elegant_needs_a_beam():
    with pytest.raises(ImportRefused, match="an elegant lattice file has no beam"):
        import_lattice(DATA / "cheetah_fodo.lte")


def test_segment_of_every_translated_cheetah_kind():
    import torch

    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    segment = cheetah.Segment([
        cheetah.Drift(length=t(0.5), name="d"),
        cheetah.Quadrupole(length=t(0.3), k1=t(2.0), name="q"),
        cheetah.Dipole(length=t(1.0), angle=t(0.1), dipole_e1=t(0.02), dipole_e2=t(0.03),
                       k1=t(0.1), name="b"),
        cheetah.Sextupole(length=t(0.2), k2=t(5.0), name="s"),
        cheetah.Solenoid(length=t(0.4), k=t(0.25), name="sol"),
        cheetah.HorizontalCorrector(length=t(0.0), angle=t(1e-4), name="hc"),
        cheetah.VerticalCorrector(length=t(0.0), angle=t(2e-4), name="vc"),
        cheetah.Marker(name="m"),
        cheetah.BPM(name="bpm"),
        cheetah.Segment([cheetah.Drift(length=t(0.1), name="inner")], name="sub"),
        cheetah.Aperture(x_max=t(1e-3), y_max=t(2e-3), shape="elliptical", name="ap"),
    ])
    result = import_segment(segment)
    assert not result.untranslatable
    fields = {item.name: item.fields for item in result.items}
    assert fields["sol"]["SolenoidP"] == {"Ksol": 0.5}
    assert fields["hc"]["MagneticMultipoleP"] == {"Kn0L": -1e-4}
    assert fields["vc"]["MagneticMultipoleP"] == {"Ks0L": 2e-4}
    assert fields["b"]["BendP"] == {"g_ref": 0.1, "e1": 0.02, "e2": 0.03}
    data = import_elements(apply_policy(result, "error"), BeamSpec("electron", 50.0), "seg")
    scenario = scenario_from_dict(data)
    assert [e.kind for e in scenario.elements][-1] == "Aperture"


def test_segment_refuses_what_it_cannot_translate():
    import torch

    segment = cheetah.Segment([
        cheetah.Quadrupole(length=torch.tensor(0.3), k1=torch.tensor(1.0),
                           tilt=torch.tensor(0.1), name="qt"),
        cheetah.Undulator(length=torch.tensor(1.0), name="und"),
        cheetah.Cavity(length=torch.tensor(1.0), voltage=torch.tensor(1e6), name="cav"),
    ])
    names = {u.name: u.reason for u in import_segment(segment).untranslatable}
    assert set(names) == {"qt", "und", "cav"}
    assert names["und"] == "Cheetah Undulator has no trackbench translation"


def test_madx_import_and_cheetah_round_trip_agree():
    """The MAD-X-imported FODO, built as a Cheetah Segment by the harness's Cheetah adapter
    and imported back from that Segment, is the same lattice."""
    from backends.cheetah import cheetah_segment

    imported = import_lattice(DATA / "impactx_fodo.madx")
    scenario = scenario_from_dict(imported.data)
    back = import_segment(cheetah_segment(scenario))
    beam = BeamSpec(scenario.beam.species, scenario.beam.kinetic_energy_MeV)
    again = scenario_from_dict(import_elements(apply_policy(back, "error"), beam, "again"))
    lengths = [e for e in again.elements if e.length]
    assert [(e.kind, e.params) for e in lengths] == \
        [(e.kind, e.params) for e in scenario.elements if e.length]
    np.testing.assert_allclose(linear_map(again).numpy(),
                               madx_file_matrix(DATA / "impactx_fodo.madx"), rtol=0,
                               atol=1e-10)


def test_impactx_lattice_in_python():
    impactx = pytest.importorskip("impactx")
    ix = impactx.elements
    from harness.io.impactx_lattice import import_impactx
    from harness.model.reference_particle import ReferenceParticle

    reference = ReferenceParticle("electron", 2000.0)
    lattice = [ix.Drift(ds=0.25, name="d1"), ix.Quad(ds=1.0, k=1.0, name="q1"),
               ix.DipEdge(psi=0.05, rc=10.0, g=0.0, K2=0.0, name="edge_in"),
               ix.Sbend(ds=1.0, rc=10.0, name="b"),
               ix.ChrQuad(ds=1.0, k=-1.0 * reference.rigidity_Tm, unit=1, name="q2"),
               ix.Multipole(multipole=3, K_normal=0.5, K_skew=0.0, name="m3"),
               ix.Sol(ds=0.5, ks=0.2, name="sol"),
               ix.ShortRF(V=0.01, freq=1.3e9, phase=-90.0, name="rf"),
               ix.ExactSbend(ds=1.0, phi=2.0, name="xb")]
    result = import_impactx(lattice, reference)
    assert not result.untranslatable
    fields = {item.name: item.fields for item in result.items}
    assert "edge_in" not in fields and fields["b"]["BendP"]["e1"] == 0.05
    # unit 1: the field [T/m] (ImpactX divides it by the local rigidity)
    assert fields["q2"]["MagneticMultipoleP"]["Bn1"] == -1.0 * reference.rigidity_Tm
    assert fields["rf"]["RFP"]["phase"] == -math.pi / 2
    assert fields["xb"]["BendP"]["g_ref"] == pytest.approx(math.radians(2.0), rel=1e-15)
    data = import_elements(apply_policy(result, "error"), BeamSpec("electron", 2000.0), "ix")
    assert len(scenario_from_dict(data).elements) == 8
