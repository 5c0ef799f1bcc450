"""A backend's support and translation of a case are decided once: the parent plans the
case (:meth:`backends.base.Backend.plan`), the case process prepares from that plan without
asking again (counted on a fake backend across both processes)."""

from __future__ import annotations

from collections import Counter

import yaml

from backends.base import Plan, Unsupported
from harness.case_process import Limits
from harness.cases import Case
from harness.model.load import BUNDLED_DIR, load_scenario
from harness.results import read_rows
from harness.runner import Runner

COUNTING = "fake_backends:CountingBackend"
LIMITS = Limits(timeout_s=120.0, memory_bytes=1 << 30)


def _calls(counts) -> list[tuple[str, str, str]]:
    """``(pid, call, lattice key)`` of each counted call (:func:`fake_backends._count`)."""
    return [tuple(line.split()) for line in counts.read_text().splitlines()]


def _decided_once_in_the_parent(calls, own: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Check that the case's own lattice was decided and translated once, by the parent, and
    never again in the case process; the case process's pid and calls."""
    import os

    parent = str(os.getpid())
    assert Counter(c for p, c, k in calls if p == parent) == {"decide": 1, "translate": 1}
    assert {k for p, _, k in calls if p == parent} == {own}
    child = [call for call in calls if call[0] != parent]
    assert len({p for p, _, _ in child}) == 1
    assert not [c for _, c, k in child if k == own and c != "prepare"]
    return child[0][0], child


def _each_edit_planned_once_per_evaluation(child) -> None:
    """An evaluation at edited parameter values is a new lattice: one decision and one
    translation for each time it is prepared, never more."""
    for key in {k for _, _, k in child}:
        calls = Counter(c for _, c, k in child if k == key)
        if calls["decide"]:
            assert calls["decide"] == calls["translate"] == calls["prepare"], (key, calls)


def test_support_and_translation_happen_once_per_case(tmp_path, fake_path, monkeypatch):
    counts = tmp_path / "counts.txt"
    monkeypatch.setenv("FAKE_COUNT_FILE", str(counts))
    scenario = load_scenario("fodo_linear")
    cases = [Case("fodo_linear", scenario.source_file, COUNTING,
                  particles, repeat=2) for particles in (100, 200)]
    Runner(tmp_path / "run", LIMITS).run(
        cases, {"fodo_linear": scenario})
    rows = read_rows(tmp_path / "run")
    assert [row["status"] for row in rows] == ["ok", "ok"]
    lines = _calls(counts)
    calls = [what for _, what, _ in lines]
    assert calls.count("decide") == len(cases)       # support: once per case
    assert calls.count("translate") == len(cases)    # translation: once per case
    assert calls.count("prepare") == len(cases)
    deciders = {pid for pid, what, _ in lines if what == "decide"}
    preparers = {pid for pid, what, _ in lines if what == "prepare"}
    assert len(preparers) == len(cases) and not deciders & preparers  # each in its child


def test_a_gradient_case_is_decided_once_and_its_evaluations_prepare_from_the_plan(
        tmp_path, fake_path, monkeypatch):
    """A gradient case: the parent plans it once; in the case process the finite-difference
    evaluations at the scenario's own values prepare from that plan (no decision, no
    translation), each evaluation at a stepped value plans its new lattice once."""
    import fake_backends

    counts = tmp_path / "counts.txt"
    monkeypatch.setenv("FAKE_COUNT_FILE", str(counts))
    scenario = load_scenario("fodo_linear")
    options = {"parameters": ["quad1.Kn1"], "objective": "sigma_x", "fd_steps": [1e-3],
               "analytic": {"quad1.Kn1": 0.0}}
    case = Case("fodo_linear", str(scenario.source_file), COUNTING, 100, repeat=2,
                kind="gradient", options=options)
    Runner(tmp_path / "run", LIMITS).run([case], {"fodo_linear": scenario})
    rows = read_rows(tmp_path / "run")
    assert {row["status"] for row in rows} == {"ok"}
    assert rows[0]["fd_evaluations"] == 2 + 2      # repeat 2 at theta0, two stepped values
    own = fake_backends.lattice_key(scenario)
    _, child = _decided_once_in_the_parent(_calls(counts), own)
    assert Counter(c for _, c, k in child if k == own) == {"prepare": 2}
    edits = {k for _, _, k in child} - {own}
    assert len(edits) == 2
    _each_edit_planned_once_per_evaluation(child)
    assert Counter(c for _, c, _ in child)["decide"] == 2


def test_a_tuning_case_is_decided_once_in_the_parent(tmp_path, fake_path, monkeypatch):
    """A tuning case: the case process takes the parent's plan (no ``supports`` asked
    again); each black-box evaluation plans its own lattice once, one at the scenario's
    own values prepares from the parent's plan."""
    import fake_backends

    from harness.tuning.case import plan_tuning_cases, run_tuning
    from harness.tuning.scenarios import load_tuning_scenario

    data = yaml.safe_load((BUNDLED_DIR / "fodo_linear.yaml").read_text())
    data["name"] = "fodo_tuning"
    data["tuning"] = {"parameters": {"quad1.Kn1": {"lower": 0.5, "upper": 2.0}},
                      "targets": {"sigma_x": {"value": 1.0e-4, "relative": True}},
                      "tolerance": {"objective": 1e-20}, "budget": {"evaluations": 6},
                      "particles": 100}
    path = tmp_path / "fodo_tuning.yaml"
    path.write_text(yaml.safe_dump(data))
    counts = tmp_path / "counts.txt"
    monkeypatch.setenv("FAKE_COUNT_FILE", str(counts))
    scenario = load_tuning_scenario(str(path))
    out = tmp_path / "run"
    cases = plan_tuning_cases([scenario], [COUNTING], ["neldermead"], None, "cpu", "float64",
                              None, out)
    assert len(cases) == 1
    run_tuning(cases, {scenario.name: scenario}, out, LIMITS)
    (row,) = read_rows(out)
    assert row["status"] == "ok" and row["evaluations"] >= 2
    _, child = _decided_once_in_the_parent(_calls(counts), fake_backends.lattice_key(scenario))
    _each_edit_planned_once_per_evaluation(child)
    # the warm-up and every evaluation each prepared once
    assert Counter(c for _, c, _ in child)["prepare"] == 1 + row["evaluations"]


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
