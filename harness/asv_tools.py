"""The asv (airspeed velocity) flows of trackbench, wrapped for ``trackbench asv``.

* :func:`run_current`: run the suite in the current Python (``asv run --python=same``),
  recording the results under the checked-out commit (``--set-commit-hash``), optionally in
  asv's ``--quick`` mode (each benchmark once) and on the one-tiny-case grid
  (``TRACKBENCH_ASV_QUICK=1``, see :mod:`benchmarks.grid`);
* :func:`continuous`: ``asv continuous`` between two commits in virtualenvs built from
  ``asv.conf.json``, failing on a slow-down beyond a factor;
* :func:`regressions`: the speed/memory regression gate between two recorded commits,
  with asv's own statistics (``time_*`` and ``peakmem_*`` only: ``track_*`` accuracy values
  sit at round-off, where a ratio means nothing; the harness's verdicts judge accuracy);
* :func:`publish` / :func:`preview`: the HTML dashboard (checked in a headless browser by
  :mod:`harness.dashboard`).

asv resolves the paths of its configuration against the working directory, so every asv
command runs in the repository root; :func:`isolated_config` writes a copy of the
configuration with absolute paths and its own results and HTML folders (tests).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = REPO_ROOT / "asv.conf.json"
#: Machine name under which results are stored (CI hosts change names between runs).
MACHINE_VARIABLE = "TRACKBENCH_ASV_MACHINE"
#: Environment variable of :mod:`benchmarks.grid` that selects the one-tiny-case grid.
QUICK_VARIABLE = "TRACKBENCH_ASV_QUICK"
#: Slow-down factor that counts as a regression (1.5: 50 % slower), loose enough for the
#: noise of shared 2-core CI machines.
DEFAULT_FACTOR = 1.5
#: Benchmarks the regression gate looks at.
GATED_PREFIXES = ("time_", "peakmem_")


def asv_command(*args: str, config: Path = CONFIG) -> list[str]:
    """``python -m asv SUBCOMMAND --config CONFIG ARGS...`` with this interpreter."""
    subcommand, *rest = args
    return [sys.executable, "-m", "asv", subcommand, "--config", str(config), *rest]


def call(*args: str, config: Path = CONFIG, env: dict[str, str] | None = None,
         capture: bool = False) -> subprocess.CompletedProcess:
    """Run one asv command in the repository root (never raises on a non-zero status)."""
    return subprocess.run(asv_command(*args, config=config), cwd=REPO_ROOT, env=env,
                          text=True, capture_output=capture, check=False)


def load_config(config: Path = CONFIG) -> dict:
    """The asv configuration as a dict (asv's JSON allows ``//`` comments; ours has none)."""
    return json.loads(Path(config).read_text())


def config_path(config: Path, key: str) -> Path:
    """A folder named in the configuration, absolute (asv reads it against the cwd)."""
    path = Path(load_config(config)[key])
    return path if path.is_absolute() else REPO_ROOT / path


def isolated_config(directory: Path, base: Path = CONFIG) -> Path:
    """A copy of the configuration in ``directory`` with absolute paths, whose results and
    HTML go to ``directory/asv`` and ``directory/html``; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = load_config(base)
    data["repo"] = str(REPO_ROOT)
    for key in ("benchmark_dir", "env_dir"):
        data[key] = str(config_path(base, key))
    data["results_dir"] = str(directory / "asv")
    data["html_dir"] = str(directory / "html")
    path = directory / "asv.conf.json"
    path.write_text(json.dumps(data, indent=4))
    return path


def machine_name() -> str:
    """``$TRACKBENCH_ASV_MACHINE``, else the host name (asv's default)."""
    return os.environ.get(MACHINE_VARIABLE) or platform.node()


def ensure_machine(machine: str, config: Path = CONFIG,
                   env: dict[str, str] | None = None) -> None:
    """Record this machine's description non-interactively (``asv machine --yes``)."""
    done = call("machine", "--yes", "--machine", machine, config=config, env=env,
                capture=True)
    if done.returncode:
        raise RuntimeError(f"asv machine failed: {done.stderr.strip() or done.stdout.strip()}")


def head_commit() -> str:
    """The checked-out commit hash."""
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, text=True,
                          capture_output=True, check=True).stdout.strip()


def benchmark_environment(tiny: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the benchmark processes (the tiny grid when asked)."""
    env = dict(os.environ if base is None else base)
    if tiny:
        env[QUICK_VARIABLE] = "1"
    else:
        env.pop(QUICK_VARIABLE, None)
    return env


def run_current(config: Path = CONFIG, machine: str | None = None, quick: bool = True,
                tiny: bool = False, bench: str | None = None,
                env: dict[str, str] | None = None) -> int:
    """Run the suite in this interpreter and record it under the checked-out commit.

    Args:
        quick: asv ``--quick``: each benchmark once, no statistics (a smoke run).
        tiny: the one-tiny-case grid (``TRACKBENCH_ASV_QUICK=1``).
        bench: a regular expression selecting benchmarks (asv ``--bench``).
        env: environment of the asv processes (default: this process's).

    Returns:
        asv's exit status (non-zero when a benchmark failed).
    """
    machine = machine or machine_name()
    env = benchmark_environment(tiny, env)
    ensure_machine(machine, config, env)
    args = ["run", "--python=same", "--set-commit-hash", head_commit(), "--machine", machine,
            "--show-stderr"]
    if quick:
        args.append("--quick")
    if bench:
        args += ["--bench", bench]
    return call(*args, config=config, env=env).returncode


def continuous(base: str, head: str = "HEAD", factor: float = DEFAULT_FACTOR,
               config: Path = CONFIG, bench: str | None = None) -> int:
    """``asv continuous``: benchmark ``base`` and ``head`` in fresh virtualenvs (built as
    ``asv.conf.json`` says) and exit non-zero when ``head`` is slower by ``factor``."""
    machine = machine_name()
    ensure_machine(machine, config)
    args = ["continuous", "--factor", str(factor), "--split", "--show-stderr", "--machine",
            machine]
    if bench:
        args += ["--bench", bench]
    return call(*args, base, head, config=config).returncode


def publish(config: Path = CONFIG) -> int:
    """``asv publish``: the HTML dashboard of every recorded result."""
    return call("publish", config=config).returncode


def preview(port: int = 8080, config: Path = CONFIG) -> int:
    """``asv preview``: serve the published dashboard (until interrupted)."""
    return call("preview", "--port", str(port), config=config).returncode


# --------------------------------------------------------------------------- regression gate


@dataclass(frozen=True)
class Change:
    """One benchmark value that got worse: ``after / before`` > the factor."""

    name: str
    environment: str
    before: float
    after: float
    unit: str

    @property
    def ratio(self) -> float:
        """after / before."""
        return self.after / self.before


def _values(results_dir: Path, machine: str, commit: str) -> dict[tuple[str, str], tuple]:
    """``(benchmark(params), environment) -> (value, (stats, samples))`` of one commit."""
    from asv.commands.compare import unroll_result
    from asv.results import iter_results_for_machine_and_hash

    out = {}
    for result in iter_results_for_machine_and_hash(str(results_dir), machine, commit):
        for key in result.get_all_result_keys():
            params = result.get_result_params(key)
            rows = unroll_result(key, params, result.get_result_value(key, params),
                                 result.get_result_stats(key, params),
                                 result.get_result_samples(key, params))
            for name, value, stats, samples in rows:
                out[(name, result.env_name)] = (value, (stats, samples))
    return out


def recorded_commits(results_dir: Path, machine: str) -> list[tuple[int, str]]:
    """``(commit date [ms], hash)`` of every commit with results on a machine, oldest first."""
    from asv.results import iter_results_for_machine

    found = {(int(r.date or 0), r.commit_hash)
             for r in iter_results_for_machine(str(results_dir), machine)}
    return sorted(found)


def previous_commit(results_dir: Path, machine: str, head: str) -> str | None:
    """The most recent commit other than ``head`` with results on this machine."""
    earlier = [commit for _, commit in recorded_commits(results_dir, machine)
               if not commit.startswith(head) and not head.startswith(commit)]
    return earlier[-1] if earlier else None


def regressions(base: str, head: str, factor: float = DEFAULT_FACTOR,
                config: Path = CONFIG, machine: str | None = None) -> list[Change]:
    """``time_*``/``peakmem_*`` values of ``head`` worse than ``base`` by more than
    ``factor``, where asv's statistics also call them different (asv compare's rule).
    ValueError when either commit has no results on the machine."""
    from asv.commands.compare import _is_result_better

    machine = machine or machine_name()
    results_dir = config_path(config, "results_dir")
    before = _values(results_dir, machine, base)
    after = _values(results_dir, machine, head)
    for commit, values in ((base, before), (head, after)):
        if not values:
            raise ValueError(f"no asv results for commit {commit} on machine {machine} "
                             f"in {results_dir}")
    units = _units(results_dir)
    worse = []
    for key in sorted(set(before) & set(after)):
        name, environment = key
        method = name.split("(")[0].rsplit(".", 1)[-1]
        if not method.startswith(GATED_PREFIXES):
            continue
        (old, old_stats), (new, new_stats) = before[key], after[key]
        if old is None or new is None or old != old or new != new or old <= 0:
            continue
        if _is_result_better(old, new, old_stats, new_stats, factor):
            worse.append(Change(name, environment, old, new,
                                units.get(name.split("(")[0], "")))
    return worse


def _units(results_dir: Path) -> dict[str, str]:
    """Benchmark units from asv's ``benchmarks.json``."""
    path = Path(results_dir) / "benchmarks.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {name: entry.get("unit", "") for name, entry in data.items()
            if isinstance(entry, dict)}


# --------------------------------------------------------------------------- dashboard check
