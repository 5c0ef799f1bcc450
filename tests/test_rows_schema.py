"""Every column a row carries is described in harness.rows; statuses, causes and verdicts
come from the vocabulary's enums."""

from __future__ import annotations

from harness import rows as schema
from harness.case_process import Limits
from harness.cases import Case
from harness.model.load import load_scenario
from harness.model.vocabulary import Cause, Status, Verdict
from harness.results import read_rows
from harness.runner import Runner

FAKE = "fake_backends:"



def test_undocumented_keys_are_found():
    assert schema.undocumented({"kind": "track", "obs_sigma_x": 1.0, "dev_max_px": 0.0}) == set()
    assert schema.undocumented({"kind": "track", "sigma_typo": 1.0}) == {"sigma_typo"}
    assert schema.undocumented({"kind": "gradient", "time_median_s": 1.0}) == {
        "time_median_s"}


def test_every_written_column_is_documented(tmp_path, fake_path):
    """Rows of every status and both kinds, as the runner writes them."""
    scenario = load_scenario("fodo_linear")
    path = scenario.source_file
    reference = Case("fodo_linear", path, FAKE + "IdentityBackend", 300, repeat=1,
                     role="reference", reference="fake-identity")
    track = [Case("fodo_linear", path, FAKE + name, 300, repeat=1, reference="fake-identity",
                  reference_case=reference.case_id)
             for name in ("LossBackend", "BlowUpBackend", "RaisingBackend", "CrashBackend",
                          "UnsupportingBackend")]
    options = {"parameters": ["quad1.Kn1"], "objective": "sigma_x", "fd_steps": [1e-5]}
    gradient = [Case("fodo_linear", path, FAKE + name, 300, repeat=1, kind="gradient",
                     options=options | {"label": name})
                for name in ("IdentityBackend", "RaisingBackend")]
    huge = Case("fodo_linear", path, FAKE + "IdentityBackend", 10**12, repeat=1)
    Runner(tmp_path, Limits(timeout_s=120.0, memory_bytes=1 << 30)).run(
        [reference, *track, *gradient, huge], {"fodo_linear": scenario})
    rows = read_rows(tmp_path)
    assert {r["status"] for r in rows} == {"ok", "failed", "unsupported", "oom"}
    for row in rows:
        assert schema.undocumented(row) == set(), (row["case_id"], schema.undocumented(row))
        assert row["status"] in set(Status)
        if row.get("cause"):
            assert row["cause"] in set(Cause)
        if row.get("verdict"):
            assert row["verdict"] in set(Verdict)
