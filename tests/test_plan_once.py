"""A backend's support and translation of a case are decided once: the parent plans the
case (:meth:`backends.base.Backend.plan`), the case process prepares from that plan without
asking again (counted on a fake backend across both processes)."""

from __future__ import annotations

from backends.base import Plan, Unsupported
from harness.case_process import Limits
from harness.cases import Case
from harness.model.load import load_scenario
from harness.results import read_rows
from harness.runner import Runner


def test_support_and_translation_happen_once_per_case(tmp_path, fake_path, monkeypatch):
    counts = tmp_path / "counts.txt"
    monkeypatch.setenv("FAKE_COUNT_FILE", str(counts))
    scenario = load_scenario("fodo_linear")
    cases = [Case("fodo_linear", scenario.source_file, "fake_backends:CountingBackend",
                  particles, repeat=2) for particles in (100, 200)]
    Runner(tmp_path / "run", Limits(timeout_s=120.0, memory_bytes=1 << 30)).run(
        cases, {"fodo_linear": scenario})
    rows = read_rows(tmp_path / "run")
    assert [row["status"] for row in rows] == ["ok", "ok"]
    lines = [line.split() for line in counts.read_text().splitlines()]
    calls = [what for _, what in lines]
    assert calls.count("decide") == len(cases)       # support: once per case
    assert calls.count("translate") == len(cases)    # translation: once per case
    assert calls.count("prepare") == len(cases)
    deciders = {pid for pid, what in lines if what == "decide"}
    preparers = {pid for pid, what in lines if what == "prepare"}
    assert len(preparers) == len(cases) and not deciders & preparers  # each in its child


def test_a_backend_with_only_supports_and_prepare_gets_a_plan() -> None:
    """The older contract (``supports`` + ``prepare(scenario, device, dtype)``) keeps
    working: the base class plans from ``supports`` and prepares with the plan's case."""
    import fake_backends

    scenario = load_scenario("fodo_linear")
    backend = fake_backends.IdentityBackend()
    plan = backend.plan(scenario, "cpu", "float64")
    assert isinstance(plan, Plan) and plan.scenario is scenario and plan.lattice is None
    with backend.prepare_planned(plan) as prepared:
        assert prepared.model == plan.model
        assert prepared.compiled is None
    refused = fake_backends.UnsupportingBackend().plan(scenario)
    assert isinstance(refused, Unsupported)


def test_declared_capabilities_are_checked_by_the_base_class() -> None:
    import fake_backends

    class CpuOnly(fake_backends.IdentityBackend):
        name = "fake-cpu-only"
        devices = ("cpu",)
        dtypes = ("float64",)
        space_charge_kinds = frozenset()

    scenario = load_scenario("fodo_linear")
    assert CpuOnly().plan(scenario)
    on_cuda = CpuOnly().plan(scenario, "cuda")
    in_float32 = CpuOnly().plan(scenario, "cpu", "float32")
    assert isinstance(on_cuda, Unsupported) and "device 'cuda'" in on_cuda.reason
    assert isinstance(in_float32, Unsupported) and "dtype 'float32'" in in_float32.reason
