"""ImpactX's space-charge mesh as the scenario states it: any grid (AMReX blocking factors
chosen per dimension), and the in-house tracker on the same mesh, particle by particle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("impactx")

from backends.base import Unsupported  # noqa: E402
from backends.impactx import ImpactXBackend, blocking_factors  # noqa: E402
from backends.inhouse.sc_tracking import build_space_charge_tracker  # noqa: E402
from harness.model.load import load_scenario  # noqa: E402
from harness.model.particles import generate  # noqa: E402

pytestmark = pytest.mark.impactx

BACKEND = ImpactXBackend()


def expanding_beam(grid: tuple[int, int, int], **space_charge):
    """``expanding_beam`` with another mesh (built without the schema's validation, which
    is not what is tested here)."""
    base = load_scenario("expanding_beam")
    settings = base.space_charge.model_copy(update={"grid": grid, **space_charge})
    return base.model_copy(update={"space_charge": settings})


def impactx_and_inhouse(scenario, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial particles and both codes' final particles, same particles, fp64."""
    initial = generate(scenario.beam, n)
    with BACKEND.prepare(scenario) as prepared:
        impactx = prepared.track(initial)
    inhouse, _ = build_space_charge_tracker(scenario).track(torch.as_tensor(initial))
    return initial, impactx, inhouse.numpy()


def test_blocking_factor_is_the_largest_power_of_two_dividing_each_dimension() -> None:
    """ImpactX's examples/expanding_beam runs 16 x 16 x 20 cells with blocking factors
    16, 16, 4 (AMReX: a power of two dividing the domain length)."""
    assert blocking_factors((16, 16, 20)) == (16, 16, 4)
    assert blocking_factors((27, 30, 28)) == (1, 2, 4)
    assert blocking_factors((2, 1024, 64)) == (2, 1024, 64)


def test_expanding_beam_example_grid_runs() -> None:
    """16 x 16 x 20 cells (the example's mesh; AMReX's default blocking factor 8 made
    ``init_grids`` fail with "domain size not divisible by blocking_factor")."""
    scenario = expanding_beam((16, 16, 20), kicks_per_element=2)
    assert BACKEND.supports(scenario)
    initial = generate(scenario.beam, 2000)
    with BACKEND.prepare(scenario) as prepared:
        final = prepared.track(initial)
    assert np.all(np.isfinite(final))
    assert final[:, 0].std() / initial[:, 0].std() > 1.5     # it expanded (analytic: 2)


def test_odd_grid_agrees_with_the_inhouse_mesh() -> None:
    """27 x 30 x 28 cells (blocking factors 1, 2, 4), one kick: ImpactX and the in-house
    tracker on the same mesh agree particle by particle. Measured: 6.7e-10 of sigma rms."""
    initial, impactx, inhouse = impactx_and_inhouse(expanding_beam((27, 30, 28)), 3000)
    deviation = np.sqrt(np.mean((inhouse - impactx) ** 2, axis=0)) / impactx.std(0)
    assert deviation.max() < 1e-7, deviation
    assert impactx[:, 1].std() > 0.0    # the kick happened


def test_grid_amrex_cannot_index_is_unsupported_with_a_reason() -> None:
    """No grid the schema accepts (2..1024 cells per dimension) lacks a decomposition; one
    beyond AMReX's box index range is refused at plan time, naming the field."""
    verdict = BACKEND.supports(expanding_beam((32, 32, 2**21)))
    assert isinstance(verdict, Unsupported)
    assert "space_charge.grid" in verdict.reason and "along z" in verdict.reason


def test_mesh_padding_reaches_impactx_and_inhouse_alike() -> None:
    """A stated ``space_charge.prob_relative`` (mesh extent / beam extent per axis) reaches
    ImpactX (it ran 1.1 whatever the scenario said) and the in-house tracker the same way:
    1.6 changes the kick (the cells are 1.45x larger) and both codes still agree particle by
    particle. Measured (3000 particles, 32^3, one kick): the kicks of 1.1 and 1.6 differ by
    3.5 % of their rms (rms over particles; 13-20 % at most); the codes agree to 4.8e-10 of
    sigma rms at both."""
    scenario = expanding_beam((32, 32, 32))
    padded = scenario.model_copy(update={"space_charge": scenario.space_charge.model_copy(
        update={"prob_relative": 1.6})})
    initial, impactx_11, inhouse_11 = impactx_and_inhouse(scenario, 3000)
    _, impactx_16, inhouse_16 = impactx_and_inhouse(padded, 3000)
    momentum = [1, 3, 5]
    kick = (impactx_11 - initial)[:, momentum]
    change = np.abs(impactx_16 - impactx_11)[:, momentum].max(0) / kick.std(0)
    assert change.min() > 1e-2, change
    for impactx, inhouse in ((impactx_11, inhouse_11), (impactx_16, inhouse_16)):
        deviation = np.sqrt(np.mean((inhouse - impactx) ** 2, axis=0)) / impactx.std(0)
        assert deviation.max() < 1e-7, deviation


def test_support_note_names_the_mesh_and_domain_sigmas() -> None:
    """ImpactX's mesh is never sized in rms units: a ``domain_sigmas`` stated alone is refused
    by name (never replaced by ImpactX's 1.1 silently); stated beside ``prob_relative`` (for
    Cheetah), the support note says what ImpactX runs and whose setting it is."""
    verdict = BACKEND.supports(expanding_beam((32, 32, 32), domain_sigmas=4.0))
    assert isinstance(verdict, Unsupported)
    assert verdict.reason.startswith("space_charge.domain_sigmas 4")
    verdict = BACKEND.supports(expanding_beam((32, 32, 32), domain_sigmas=4.0,
                                              prob_relative=1.1))
    assert verdict
    assert "prob_relative 1.1" in verdict.note and "domain_sigmas 4" in verdict.note


def test_prob_relative_stated_in_a_scenario_file_reaches_impactx(tmp_path) -> None:
    """``space_charge.prob_relative`` is a scenario field (validated, 1 to 10): stated in the
    file, it is the padding ImpactX runs and names in its support note."""
    from backends.impactx import mesh_prob_relative

    source = load_scenario("expanding_beam").source_file
    assert source is not None
    text = Path(source).read_text().replace("kicks_per_element:", "prob_relative: 1.35, "
                                       "kicks_per_element:", 1)
    assert "prob_relative: 1.35" in text
    path = tmp_path / "padded.yaml"
    path.write_text(text)
    scenario = load_scenario(path)
    assert mesh_prob_relative(scenario.space_charge) == 1.35
    assert "prob_relative 1.35" in BACKEND.supports(scenario).note
