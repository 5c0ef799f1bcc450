"""MAD-X import through cpymad: real files (ImpactX's examples, copied under tests/data),
MAD-X's own transfer matrix to 1e-10, ImpactX vs the in-house tracker particle by particle,
and every untranslatable element named."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backends.inhouse.transfer_map import linear_map
from harness.io.importer import import_lattice
from harness.io.model import ImportRefused
from harness.model.load import scenario_from_dict
from tests.io_helpers import (
    DATA,
    data_copy,
    impactx_vs_inhouse,
    madx_file_matrix,
    madx_matrix,
)

pytest.importorskip("cpymad")

#: Real MAD-X files of ImpactX's examples (tests/data/README.md) and what they hold.
REAL_FILES = {
    "impactx_fodo.madx": {"Quadrupole": 2, "Drift": 3, "Instrument": 2},
    "impactx_chicane.madx": {"SBend": 4, "Multipole": 4, "Drift": 4, "Instrument": 2},
    "impactx_dogleg.madx": {"SBend": 2, "Multipole": 2, "Drift": 6},
    "impactx_kicker.madx": {"Kicker": 2, "Instrument": 2},
    "impactx_hvkicker.madx": {"Kicker": 2, "Instrument": 2},
    "impactx_solenoid.madx": {"Solenoid": 1, "Instrument": 2},
}


def kinds(scenario) -> dict[str, int]:
    out: dict[str, int] = {}
    for element in scenario.elements:
        out[element.kind] = out.get(element.kind, 0) + 1
    return out


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_file_matches_madx_transfer_matrix(name, tmp_path):
    path = data_copy(name, tmp_path)  # the dogleg file writes a TWISS table beside itself
    imported = import_lattice(path)
    scenario = scenario_from_dict(imported.data)
    assert kinds(scenario) == REAL_FILES[name]
    ours = linear_map(scenario).numpy()
    madx = madx_file_matrix(path)
    assert np.max(np.abs(ours - madx)) < 1e-10


@pytest.mark.impactx
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_file_tracks_the_same_in_impactx_and_inhouse(name, tmp_path):
    pytest.importorskip("impactx")
    scenario = scenario_from_dict(import_lattice(data_copy(name, tmp_path)).data)
    assert impactx_vs_inhouse(scenario) < 1e-11


def test_beam_comes_from_the_beam_command():
    imported = import_lattice(DATA / "impactx_solenoid.madx")
    beam = imported.data["beam"]
    assert beam["species"] == "proton"
    # BEAM ENERGY=1.188272 GeV is the total energy; gamma is kept (harness rest energy)
    gamma_madx = 1.188272 / 0.93827208816
    assert beam["kinetic_energy_MeV"] == pytest.approx((gamma_madx - 1) * 938.272089428257,
                                                       rel=1e-12)


def test_fodo_beam_is_madx_periodic_twiss():
    beam = import_lattice(DATA / "impactx_fodo.madx").data["beam"]
    # the bundled fodo_linear scenario's matched beta of the same cell
    assert beam["twiss"]["beta_x"] == pytest.approx(2.821619410026264, rel=1e-8)
    assert beam["twiss"]["alpha_x"] == pytest.approx(-1.59050035, rel=1e-8)


def test_dipedges_become_exact_linear_edge_kicks():
    imported = import_lattice(DATA / "impactx_chicane.madx")
    edges = [n for n in imported.result.notes if n.startswith("DIPEDGE")]
    assert len(edges) == 4 and all("Kn1L = -H tan(E1)" in n for n in edges)
    kick = imported.data["lattice"]["PALS"]["facility"][2]["dipe1"]
    assert kick["MagneticMultipoleP"]["Kn1L"] == 0.096653578905433 * math.tan(
        -0.048345620280243)


SYNTHETIC = """
beam, particle={particle}, energy={energy};
qf: quadrupole, l=0.5, k1=0.8;
qd: quadrupole, l=0.5, k1=-0.7;
b1: sbend, l=1.0, angle=0.1, e1=0.03, e2=0.02, k1=0.05;
b2: sbend, l=0.8, angle=-0.08;
edge: dipedge, h=-0.1, e1=-0.01;
rb: rbend, l=0.6, angle=0.05, e1=0.01;
s1: sextupole, l=0.2, k2=3.0;
mp: multipole, knl={{0, 0.02, 0.5}}, ksl={{0, 0.003}};
sol: solenoid, l=0.4, ks=0.3;
rf: rfcavity, l=0, volt=2.5, freq=400, lag=0.0;
mk: marker;
bpm: monitor, l=0.1;
hk: hkicker, kick=1e-4;
vk: vkicker, kick=-2e-4;
kk: kicker, hkick=3e-5, vkick=4e-5;
hka: hkicker, hkick=-5e-5;
vka: vkicker, vkick=6e-5;
hkt: hkicker, l=0.2, kick=7e-5;
kt: tkicker, l=0.3, hkick=-2e-5, vkick=9e-5;
seq: sequence, l=12, refer=entry;
mk, at=0.1;
qf, at=0.5;
b1, at=1.5;
s1, at=3.0;
mp, at=3.5;
b2, at=4.0;
edge, at=4.8;
rb, at=5.5;
sol, at=6.5;
rf, at=7.2;
qd, at=8.0;
bpm, at=9.0;
endsequence;
kicks: sequence, l=5, refer=entry;
hk, at=0.5;
vk, at=1.0;
kk, at=1.5;
qf, at=2.0;
hka, at=2.6;
vka, at=2.8;
hkt, at=3.0;
kt, at=3.5;
endsequence;
use, sequence=seq;
"""


@pytest.fixture(params=[("proton", 1.5), ("electron", 0.01)], ids=["proton", "electron"])
def synthetic(request, tmp_path):
    particle, energy = request.param
    path = tmp_path / "all_kinds.madx"
    path.write_text(SYNTHETIC.format(particle=particle, energy=energy))
    return path


def test_every_translated_kind_matches_madx(synthetic):
    from cpymad.madx import Madx

    imported = import_lattice(synthetic)
    scenario = scenario_from_dict(imported.data)
    assert set(kinds(scenario)) == {"Marker", "Quadrupole", "Drift", "SBend", "Sextupole",
                                    "Multipole", "Solenoid", "RFCavity", "Instrument"}
    assert any("merged into b2 as its exit pole face" in n for n in imported.result.notes)
    madx = Madx(stdout=False)
    try:
        madx.call(str(synthetic))
        expected = madx_matrix(madx, "seq")
    finally:
        madx.quit()
    ours = linear_map(scenario).numpy()
    assert np.max(np.abs(ours - expected)) < 1e-10 * np.max(np.abs(expected))


def test_kickers_give_madx_orbit(synthetic):
    """Kickers as ``Kicker`` Kn0L = -HKICK, Ks0L = VKICK (thin and thick, HKICKER/VKICKER
    with KICK or with MAD-X's HKICK/VKICK alias): the reference orbit at the end (MAD-X's
    TWISS orbit; its linear map about that orbit has the second-order feed-down of the
    drifts, which a linear model leaves out, so the orbit is compared)."""
    import torch
    from cpymad.madx import Madx

    from backends.inhouse.tracker import Tracker

    scenario = scenario_from_dict(import_lattice(synthetic, sequence="kicks").data)
    madx = Madx(stdout=False)
    try:
        madx.call(str(synthetic))
        madx.use(sequence="kicks")
        table = madx.twiss(sequence="kicks", betx=1.0, bety=1.0)
        expected = np.array([table.x[-1], table.px[-1], table.y[-1], table.py[-1]])
    finally:
        madx.quit()
    tracker = Tracker(scenario.elements, scenario.reference_particle)
    out, _ = tracker.track(torch.zeros(1, 6, dtype=torch.float64), {})
    assert np.all(np.abs(expected) > 1e-5)
    assert np.max(np.abs(out[0, :4].numpy() - expected)) < 1e-12 * np.max(np.abs(expected))


UNSUPPORTED = """
beam, particle=proton, energy=2.0;
o1: octupole, l=0.2, k3=10;
o2: octupole, l=0.2, k3=-10;
qt: quadrupole, l=0.5, k1=0.3, tilt=0.1;
d: drift, l=1.0;
line1: line=(d, o1, d, qt, d, o2);
use, sequence=line1;
"""


def test_untranslatable_elements_are_named_with_kind_count_and_reason(tmp_path):
    path = tmp_path / "octupoles.madx"
    path.write_text(UNSUPPORTED)
    with pytest.raises(ImportRefused) as error:
        import_lattice(path)
    message = str(error.value)
    assert "3 element(s) cannot be translated" in message
    assert "OCTUPOLE x2 (MAD-X OCTUPOLE has no trackbench translation; e.g. o1)" in message
    assert "QUADRUPOLE x1 (TILT (skew/tilted quadrupole) is not translated" in message
    assert "\n" not in message


@pytest.mark.parametrize("policy, kind", [("marker", "Instrument"), ("drift", "Drift")])
def test_policies_replace_and_keep_the_length(tmp_path, policy, kind):
    path = tmp_path / "octupoles.madx"
    path.write_text(UNSUPPORTED)
    imported = import_lattice(path, on_unsupported=policy)
    scenario = scenario_from_dict(imported.data)
    assert scenario.length == pytest.approx(3.9, abs=1e-15)
    replaced = {e.name: e.kind for e in scenario.elements if e.name in ("o1", "o2", "qt")}
    assert replaced == {"o1": kind, "o2": kind, "qt": kind}
    assert [u.name for u in imported.result.replaced] == ["o1", "qt", "o2"]


def test_real_booster_names_its_untranslatable_bends_and_imports_with_a_policy():
    path = DATA / "impactx_sbbooster.madx"
    with pytest.raises(ImportRefused, match=r"no USEd sequence; choose one with --sequence "
                       r"\(LINEs: booster, cpshort, .* and 37 more\)"):
        import_lattice(path)
    with pytest.raises(ImportRefused, match=r"96 element\(s\) cannot be translated: SBEND x96 "
                       r"\(K2 is not translated for bends; e.g. fmagu01\)"):
        import_lattice(path, sequence="booster")
    scenario = scenario_from_dict(import_lattice(path, sequence="booster",
                                                 on_unsupported="drift").data)
    assert scenario.length == pytest.approx(474.20275, abs=1e-5)


def test_no_beam_command_needs_species_and_energy(tmp_path):
    path = tmp_path / "nobeam.madx"
    path.write_text("d: drift, l=1; q: quadrupole, l=0.5, k1=0.2; l1: line=(d, q, d);\n"
                    "use, sequence=l1;\n")
    with pytest.raises(ImportRefused, match="no BEAM command; give --species and --energy"):
        import_lattice(path)
    scenario = scenario_from_dict(import_lattice(path, species="electron",
                                                 energy_MeV=100.0).data)
    assert scenario.beam.kinetic_energy_MeV == 100.0 and len(scenario.elements) == 3


def test_madx_error_is_one_line(tmp_path):
    path = tmp_path / "broken.madx"
    path.write_text("beam; d: drift, l=1; l1: line=(d, nope); use, sequence=l1;\n")
    with pytest.raises(ImportRefused) as error:
        import_lattice(path)
    assert str(error.value).startswith(f"{path}: MAD-X:") and "\n" not in str(error.value)


def test_hvkicker_keeps_the_kicks_madx_gives(tmp_path):
    """ImpactX's ``examples/kicker/hvkicker.madx`` writes ``HKICKER, hkick=2e-3`` and
    ``VKICKER, vkick=3e-3``: MAD-X reads HKICK/VKICK when KICK is zero, so its TWISS orbit
    ends at px = 0.002, py = 0.003; the import and the in-house tracker give the same."""
    import torch
    from cpymad.madx import Madx

    from backends.inhouse.tracker import Tracker

    path = data_copy("impactx_hvkicker.madx", tmp_path)
    imported = import_lattice(path)
    facility = {k: v for entry in imported.data["lattice"]["PALS"]["facility"]
                for k, v in entry.items()}
    assert facility["hk1"] == {"kind": "Kicker", "length": 0.0,
                               "MagneticMultipoleP": {"Kn0L": -0.002, "Ks0L": 0.0}}
    assert facility["vk1"] == {"kind": "Kicker", "length": 0.0,
                               "MagneticMultipoleP": {"Kn0L": 0.0, "Ks0L": 0.003}}
    madx = Madx(stdout=False)
    try:
        madx.call(str(path))
        table = madx.twiss(sequence="kicklattice", betx=1.0, bety=1.0)
        expected = np.array([table.x[-1], table.px[-1], table.y[-1], table.py[-1]])
    finally:
        madx.quit()
    np.testing.assert_allclose(expected, [0.0, 0.002, 0.0, 0.003], atol=1e-15)
    scenario = scenario_from_dict(imported.data)
    out, _ = Tracker(scenario.elements, scenario.reference_particle).track(
        torch.zeros(1, 6, dtype=torch.float64), {})
    np.testing.assert_allclose(out[0, :4].numpy(), expected, rtol=1e-15, atol=1e-18)


BEAM_STATED = """
beam, particle=proton, energy=2.0, exn=2e-6, ey=3e-9, sigt=0.002, sige=1.5e-3;
d: drift, l=1; q: quadrupole, l=0.2, k1=0.5; qd: quadrupole, l=0.2, k1=-0.5;
cell: line=(q, d, qd, d);
ring: line=(2*cell);
"""


def _notes(imported) -> str:
    return "\n".join(imported.result.notes)


def test_beam_emittances_and_spreads_come_from_the_beam_command(tmp_path):
    """EXN is normalised: EX = EXN / (beta gamma) (MAD-X manual, BEAM); EY is geometric;
    SIGT = c sigma_t [m]; SIGE the rms of PT = dE / (p0 c) = the rms of ImpactX's pt."""
    path = tmp_path / "beam.madx"
    path.write_text(BEAM_STATED)
    imported = import_lattice(path, sequence="ring")
    beam = imported.data["beam"]
    gamma = 2.0 / 0.93827208816
    beta_gamma = math.sqrt(gamma**2 - 1.0)
    assert beam["twiss"]["emittance_x"] == pytest.approx(2e-6 / beta_gamma, rel=1e-9)
    assert beam["twiss"]["emittance_y"] == 3e-9
    assert beam["longitudinal"] == {"sigma_t": 0.002, "sigma_pt": 1.5e-3}
    notes = _notes(imported)
    assert "emittance_x = " in notes and "from BEAM EXN" in notes
    assert "placeholder" not in notes


def test_beam_placeholders_only_where_the_file_states_nothing(tmp_path):
    path = tmp_path / "beam.madx"
    path.write_text(BEAM_STATED.replace("exn=2e-6, ", "").replace("sige=1.5e-3", "et=4e-6"))
    imported = import_lattice(path, sequence="ring")
    beam, notes = imported.data["beam"], _notes(imported)
    assert beam["twiss"]["emittance_x"] == 1.0e-9
    assert "emittance_x = 1e-09 m rad is a placeholder (the BEAM states no EX or EXN)" in notes
    assert beam["twiss"]["emittance_y"] == 3e-9
    # ET = SIGT * SIGE (MAD-X src/mad_beam.c) gives the spread the file leaves out
    assert beam["longitudinal"] == {"sigma_t": 0.002, "sigma_pt": pytest.approx(2e-3,
                                                                                rel=1e-12)}
    hv = import_lattice(DATA / "impactx_hvkicker.madx")
    hv_notes = _notes(hv)
    for value in ("emittance_x", "emittance_y", "sigma_t", "sigma_pt"):
        assert f"beam: {value} = " in hv_notes and "is a placeholder" in hv_notes
    assert "beta_x, alpha_x, beta_y, alpha_y are placeholders" in hv_notes


def test_a_sequence_beam_and_resbeam_are_followed(tmp_path):
    """A BEAM with SEQUENCE= belongs to that sequence (MAD-X attach_beam); RESBEAM resets."""
    from harness.io.madx_scan import scan_madx

    path = tmp_path / "beams.madx"
    path.write_text("beam, particle=proton, energy=2, ex=1e-8;\nresbeam;\n"
                    "beam, particle=proton, energy=2, ey=2e-9;\n"
                    "beam, particle=electron, energy=1, sige=1e-4, sequence=other;\n")
    scanned = scan_madx(path)
    assert scanned.stated_beam("main") == {"particle", "energy", "ey"}
    assert scanned.stated_beam("OTHER") == {"particle", "energy", "sige"}


def test_lines_are_offered_by_name_and_import_with_sequence(tmp_path):
    path = tmp_path / "beam.madx"
    path.write_text(BEAM_STATED + "other: line=(d);\n")
    with pytest.raises(ImportRefused) as error:
        import_lattice(path)
    assert str(error.value).endswith("no USEd sequence; choose one with --sequence "
                                     "(LINEs: ring, other, cell)")
    scenario = scenario_from_dict(import_lattice(path, sequence="cell").data)
    assert scenario.length == pytest.approx(2.4, abs=1e-12)
    single = tmp_path / "single.madx"
    single.write_text("beam; d: drift, l=1.5; only: line=(d, d);\n")
    assert scenario_from_dict(import_lattice(single).data).length == pytest.approx(3.0)
