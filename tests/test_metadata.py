"""What a run directory records about the run itself."""

from __future__ import annotations

from harness import metadata


def test_the_command_is_recorded_without_this_machines_paths():
    recorded = metadata.collect(["/home/someone/.venv/bin/trackbench", "run", "fodo_linear"],
                                metadata.now())
    assert recorded["command"] == ["trackbench", "run", "fodo_linear"]
    assert metadata.portable_command([]) == []
