"""Pages checked as a reader sees them: headless Chromium renders them and takes screenshots.

* :func:`dashboard_check`: serve the asv dashboard over http and load it in headless
  Chromium, check the benchmark list and a graph are rendered, and save screenshots. asv's
  pages load jQuery, flot, bootstrap, ... from public CDNs; on a machine without internet
  the check serves a copy of the dashboard whose CDN links point to the same library
  versions taken from the npm registry (:data:`CDN_ASSETS`, fetched once with ``npm pack``
  into ``results/.dashboard-assets``); the published dashboard itself is never changed.
* :func:`screenshot_page`: a PNG of a local page (e.g. a report's ``report.html``).
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.asv_tools import CONFIG, REPO_ROOT, config_path

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


def screenshot_page(page: Path, screenshot: Path, window: tuple[int, int] = (1400, 1800)) -> Path:
    """A PNG of a local HTML page as headless Chromium renders it (the report's first
    screen, say); RuntimeError when no Chromium is installed."""
    executable = find_chromium()
    if executable is None:
        raise RuntimeError("no Chromium found (looked for " + ", ".join(CHROMIUM_NAMES) + ")")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    chromium(executable, Path(page).resolve().as_uri(), screenshot=screenshot, window=window)
    return screenshot
