"""The helpers several modules share instead of copies: the line adapters' declarations
derived by ``LineBackend``, the Kicker translator, the compile-failure rule, the Poisson-mesh
check, the script generators' space-charge refusal and the number formats."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

from backends.base import compile_failure
from backends.inhouse.space_charge import MeshSettings
from backends.inhouse.space_charge_2d import TransverseMesh
from backends.scripts.common import planned_scenario
from backends.translation import LineBackend, Translation, kicker_translator
from harness.display import format_rate, format_time
from harness.model.lattice import Element

LINE_ADAPTERS = ("pyat", "xsuite", "ocelot", "rftrack")


@pytest.mark.parametrize("module", LINE_ADAPTERS)
def test_line_adapters_take_their_declarations_from_line_backend(module: str) -> None:
    """Element kinds are the translators' kinds, the stand-in code is the adapter's name, CPU
    float64, and the prepared tracker is the adapter's own class."""
    try:
        adapter = importlib.import_module(f"backends.{module}").BACKEND
    except ImportError as error:  # the code itself is optional
        pytest.skip(str(error))
    assert issubclass(adapter, LineBackend)
    assert adapter.element_kinds == frozenset(adapter.translators)
    assert adapter.stand_in_code == adapter.name
    assert (adapter.devices, adapter.dtypes) == (("cpu",), ("float64",))
    assert adapter.prepared_class.__module__ == f"backends.{module}"


def _kicker(length: float) -> Element:
    return Element(name="k", kind="Kicker", tier="paraxial",
                   params={"length": length, "Kn0L": 2e-5, "Ks0L": -3e-5})


def test_kicker_translator_puts_a_thick_kick_between_two_drift_halves() -> None:
    kicks = []

    def thin(element: Element) -> Translation:
        kicks.append(element.params)
        return Translation(("kick",))

    def drift(element: Element) -> Translation:
        return Translation((("drift", element.params["length"]),), "drift stand-in")

    kicker = kicker_translator(thin, drift)
    assert kicker(_kicker(0.0)) == Translation(("kick",))
    thick = kicker(_kicker(0.4))
    assert thick.specs == (("drift", 0.2), "kick", ("drift", 0.2))
    assert thick.stand_in == "drift stand-in"
    assert kicks == [{"Kn0L": 2e-5, "Ks0L": -3e-5}] * 2
    assert "Kicker.H" in (kicker.__doc__ or "")


def test_compile_failure_is_one_line_on_the_first_call_and_raises_later() -> None:
    error = RuntimeError("no compiler\nsecond line " + "x" * 400)
    assert compile_failure(error, first=True) == "RuntimeError: no compiler"
    assert len(compile_failure(RuntimeError("y" * 500), first=True)) == 300
    with pytest.raises(RuntimeError, match="no compiler"):
        compile_failure(error, first=False)


@pytest.mark.parametrize(("settings", "message"), [
    (lambda: MeshSettings((8, 8)), "grid must be three cell counts >= 2, got (8, 8)"),
    (lambda: MeshSettings((8, 8, 1)), "grid must be three cell counts >= 2"),
    (lambda: TransverseMesh((8, 8, 8)), "grid must be two cell counts >= 2, got (8, 8, 8)"),
    (lambda: MeshSettings(deposition="ngp"), "deposition must be one of ['cic', 'tsc']"),
    (lambda: TransverseMesh(deposition="ngp"), "deposition must be one of ['cic', 'tsc']"),
    (lambda: MeshSettings(prob_relative=0.5), "prob_relative must be >= 1"),
    (lambda: TransverseMesh(prob_relative=0.5), "prob_relative must be >= 1"),
    (lambda: TransverseMesh(longitudinal_bins=1), "longitudinal_bins must be >= 2"),
])
def test_mesh_settings_name_the_setting_that_is_off(settings, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        settings()
    assert message in str(raised.value)


def test_script_generators_refuse_space_charge_by_name() -> None:
    plan = SimpleNamespace(scenario=SimpleNamespace(space_charge=object()))
    with pytest.raises(ValueError, match="^cheetah: space-charge kicks are not written by "
                                         "the script generator$"):
        planned_scenario(plan, "cheetah", "space-charge kicks")
    quiet = SimpleNamespace(scenario=SimpleNamespace(space_charge=None))
    assert planned_scenario(quiet, "impactx", "x") is quiet.scenario


def test_number_formats() -> None:
    assert [format_time(v) for v in (None, 12.5, 0.0123, 4.5e-7, 3.2e-9, 0)] == [
        "-", "12.5 s", "12.3 ms", "450 ns", "3.2 ns", "0 ns"]
    assert [format_rate(v) for v in (float("nan"), 3e12, 2e9, 1234, 5, -1)] == [
        "-", "3 T/s", "2 G/s", "1.23 k/s", "5 /s", "-1 /s"]
