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
* :func:`publish` / :func:`preview`: the HTML dashboard;
* :func:`dashboard_check`: serve the dashboard over http and load it in headless Chromium,
  check the benchmark list and a graph are rendered, and save screenshots. asv's pages load
  jQuery, flot, bootstrap, ... from public CDNs; on a machine without internet the check
  serves a copy of the dashboard whose CDN links point to the same library versions taken
  from the npm registry (:data:`CDN_ASSETS`, fetched once with ``npm pack`` into
  ``results/.dashboard-assets``); the published dashboard itself is never changed.

asv resolves the paths of its configuration against the working directory, so every asv
command runs in the repository root; :func:`isolated_config` writes a copy of the
configuration with absolute paths and its own results and HTML folders (tests).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: asv 0.6 dashboard CDN files by name -> (npm package, file in it) of the same library
#: version (stupidtable: 1.0.1 is not on npm; 1.1.3 is API-compatible).
CDN_ASSETS: dict[str, tuple[str, str]] = {
    "jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    "jquery.flot.min.js": ("flot@0.8.3", "jquery.flot.js"),
    "jquery.flot.time.min.js": ("flot@0.8.3", "jquery.flot.time.js"),
    "jquery.flot.selection.min.js": ("flot@0.8.3", "jquery.flot.selection.js"),
    "jquery.flot.categories.min.js": ("flot@0.8.3", "jquery.flot.categories.js"),
    "jquery.flot.orderBars.js": ("flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js"),
    "stupidtable.min.js": ("stupid-table-plugin@1.1.3", "stupidtable.min.js"),
    "md5.min.js": ("blueimp-md5@2.19.0", "js/md5.min.js"),
    "bootstrap.min.js": ("bootstrap@3.1.1", "dist/js/bootstrap.min.js"),
    "bootstrap.min.css": ("bootstrap@3.1.1", "dist/css/bootstrap.min.css"),
}
ASSET_CACHE = REPO_ROOT / "results" / ".dashboard-assets"


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


@dataclass
class DashboardCheck:
    """What headless Chromium saw of the published dashboard.

    Attributes:
        ok: the benchmark list and a graph were rendered.
        skipped: why the check could not run (no Chromium, no dashboard), else "".
        benchmarks: benchmark names of ``index.json``; ``listed`` those found in the page.
        graph: whether the graph page of ``graph_benchmark`` drew a plot canvas.
        screenshots: PNG files written.
    """

    ok: bool = False
    skipped: str = ""
    benchmarks: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    graph_benchmark: str = ""
    graph: bool = False
    screenshots: list[Path] = field(default_factory=list)
    detail: str = ""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over http on a free loopback port; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib name
            return None

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def chromium(executable: str, url: str, *, screenshot: Path | None = None,
             dump_dom: bool = False, budget_ms: int = 10_000,
             window: tuple[int, int] = (1400, 900), timeout_s: float = 120.0) -> str:
    """Run headless Chromium on a URL: the rendered DOM (``dump_dom``) or a screenshot."""
    args = [executable, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run",
            f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}"]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    if dump_dom:
        args.append("--dump-dom")
    done = subprocess.run([*args, url], text=True, capture_output=True, timeout=timeout_s,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"chromium exited with {done.returncode}: "
                           f"{done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def fetch_assets(cache: Path = ASSET_CACHE) -> Path | None:
    """The dashboard's CDN libraries as local files in ``cache/vendor`` (``npm pack`` of each
    package of :data:`CDN_ASSETS`, once); None when npm is missing or a package fails."""
    import tarfile

    vendor = cache / "vendor"
    if all((vendor / name).exists() for name in CDN_ASSETS):
        return vendor
    npm = shutil.which("npm")
    if npm is None:
        return None
    vendor.mkdir(parents=True, exist_ok=True)
    for package in sorted({spec for spec, _ in CDN_ASSETS.values()}):
        done = subprocess.run([npm, "pack", package, "--silent", "--pack-destination",
                               str(cache)], cwd=cache, text=True, capture_output=True,
                              timeout=300, check=False)
        tarball = cache / done.stdout.strip().splitlines()[-1] if done.stdout.strip() else None
        if done.returncode or tarball is None or not tarball.exists():
            return None
        with tarfile.open(tarball) as archive:
            for name, (spec, member) in CDN_ASSETS.items():
                if spec == package:
                    source = archive.extractfile(f"package/{member}")
                    if source is None:
                        return None
                    (vendor / name).write_bytes(source.read())
        tarball.unlink()
    return vendor


def local_copy(html_dir: Path, vendor: Path, destination: Path) -> list[str]:
    """Copy the dashboard to ``destination`` with its CDN links pointing to ``vendor`` files
    (integrity attributes dropped: the npm files are the same versions, not the same
    bytes); returns the external links left as they were."""
    shutil.copytree(html_dir, destination, dirs_exist_ok=True)
    shutil.copytree(vendor, destination / "vendor", dirs_exist_ok=True)
    left: list[str] = []

    def rewrite(tag: re.Match) -> str:
        text = tag.group(0)
        link = re.search(r'(?:src|href)="(https?://[^"]+)"', text)
        if link is None:
            return text
        name = link.group(1).rsplit("/", 1)[-1]
        if name not in CDN_ASSETS:
            left.append(link.group(1))
            return text
        text = text.replace(link.group(1), f"vendor/{name}")
        return re.sub(r'\s(?:integrity|crossorigin|referrerpolicy)="[^"]*"', "", text)

    for page in destination.glob("*.html"):
        page.write_text(re.sub(r"<(?:script|link)\b[^>]*>", rewrite, page.read_text()))
    return left


def dashboard_check(html_dir: Path | None = None, screenshot: Path | None = None,
                    config: Path = CONFIG, local_assets: bool = True) -> DashboardCheck:
    """Load the published dashboard in headless Chromium over http.

    Checks that every benchmark of ``index.json`` appears in the rendered index page and
    that the graph page of the first ``time_*`` benchmark draws a plot (a canvas), and
    writes ``screenshot`` (the index) and ``<screenshot stem>-graph.png`` (the graph).
    With ``local_assets`` the page is served from a copy whose CDN libraries are local
    (:func:`local_copy`; works without internet), else as published.
    """
    import tempfile

    html_dir = Path(html_dir) if html_dir else config_path(config, "html_dir")
    screenshot = Path(screenshot) if screenshot else html_dir.parent / "html-screenshot.png"
    check = DashboardCheck()
    executable = find_chromium()
    if executable is None:
        check.skipped = ("no Chromium found (looked for " + ", ".join(CHROMIUM_NAMES) +
                         "); install it, e.g. apt-get install chromium")
        return check
    index = html_dir / "index.json"
    if not index.exists():
        check.skipped = f"no published dashboard in {html_dir} (run `trackbench asv publish`)"
        return check
    check.benchmarks = sorted(json.loads(index.read_text()).get("benchmarks", {}))
    timed = sorted((name for name in check.benchmarks if ".time_" in name),
                   key=lambda name: ".time_track" not in name)
    check.graph_benchmark = (timed or check.benchmarks or [""])[0]
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    graph_shot = screenshot.with_name(f"{screenshot.stem}-graph{screenshot.suffix}")
    notes = []
    with tempfile.TemporaryDirectory() as scratch:
        served = html_dir
        vendor = fetch_assets() if local_assets else None
        if vendor is not None:
            served = Path(scratch) / "html"
            left = local_copy(html_dir, vendor, served)
            notes.append("CDN libraries served locally" +
                         (f" (still external: {', '.join(left)})" if left else ""))
        elif local_assets:
            notes.append("no local copies of the CDN libraries (npm missing): page as published")
        with serve(served) as url:
            dom = chromium(executable, url + "index.html", dump_dom=True)
            chromium(executable, url + "index.html", screenshot=screenshot)
            graph_url = f"{url}index.html#{check.graph_benchmark}"
            graph_dom = chromium(executable, graph_url, dump_dom=True)
            chromium(executable, graph_url, screenshot=graph_shot)
    text = re.sub(r"<[^>]+>", " ", dom)
    check.listed = [name for name in check.benchmarks
                    if name in dom or name.rsplit(".", 1)[-1] in text]
    check.graph = "<canvas" in graph_dom
    check.screenshots = [p for p in (screenshot, graph_shot) if p.exists()]
    check.ok = bool(check.benchmarks) and len(check.listed) == len(check.benchmarks) \
        and check.graph and len(check.screenshots) == 2
    missing = sorted(set(check.benchmarks) - set(check.listed))
    check.detail = (f"{len(check.listed)}/{len(check.benchmarks)} benchmarks listed"
                    + (f" (missing: {', '.join(missing)})" if missing else "")
                    + f"; graph of {check.graph_benchmark}: "
                    + ("plot drawn" if check.graph else "no plot canvas")
                    + "".join(f"; {note}" for note in notes))
    return check
