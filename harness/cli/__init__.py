"""The ``trackbench`` command line: one module per command group.

* :mod:`harness.cli.common` — the app, consoles, option types and option checks;
* :mod:`harness.cli.scenarios` — ``list``, ``validate``, ``track``;
* :mod:`harness.cli.runs` — ``run`` (with ``grad``), ``compare``, ``report``;
* :mod:`harness.cli.tune` — ``tune`` (the tuning benchmark);
* :mod:`harness.cli.lattice_io` — ``import``, ``export``;
* :mod:`harness.cli.asv` — ``asv ...``;
* :mod:`harness.cli.reproduce` — ``reproduce``;
* :mod:`harness.cli.workloads` — ``reconstruct``, ``batch`` (the workloads benchmark).
"""

from __future__ import annotations

import importlib
import sys

from rich.markup import escape

from harness.cli.common import app, console, err_console, fail
from harness.model.errors import ScenarioError

#: The command modules, in the order ``trackbench --help`` lists their commands.
COMMAND_MODULES = ("scenarios", "runs", "tune", "lattice_io", "reproduce", "asv",
                   "workloads", "script")
for _module in COMMAND_MODULES:
    importlib.import_module(f"harness.cli.{_module}")


def main() -> None:
    """Entry point that turns bad input into one line (no traceback)."""
    try:
        app()
    except ScenarioError as error:
        from harness.names import printable

        err_console.print(f"[red]error:[/red] {escape(printable(str(error)))}",
                          highlight=False, soft_wrap=True)
        sys.exit(2)


__all__ = ["app", "console", "fail", "main"]
