"""Published figures as data: ``results/published/<name>.yaml``.

A published file holds, per figure, where its numbers come from (repository, tag, commit,
file), the hardware, code versions, precision, threads and timer of the measurement, and
one series per code configuration with a point per particle count (track time [s] and
particles per second). Reports read the numbers from here; none is typed into a report.

``impactx-benchmarks`` is extracted from the benchmark's per-machine record of its 2026
harness, ``history/<utc>_<machine>/<machine>.yaml`` (the newest Perlmutter run,
``history/20260908T221158Z_perlmutter/perlmutter.yaml``, commit
``8c56c56adda3ea9fe876b8118bcef425900d5055``)::

    python -m harness.published impactx-benchmarks PATH/TO/perlmutter.yaml

rewrites ``results/published/impactx-benchmarks.yaml``: one figure per scenario x device x
precision x math (IEEE and fast-math apart), one series per configuration of the record.

``napac25`` is extracted from the benchmark's own record, ``napac25/timings.yaml`` of
BLAST-ImpactX/impactx-benchmarks at tag ``napac25``, with the figure layout of
``napac25/plot_scenarios.py`` (which configurations each figure shows, on which host)::

    python -m harness.published napac25 PATH/TO/impactx-benchmarks/napac25/timings.yaml

rewrites ``results/published/napac25.yaml`` (the path is a checkout of that tag).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

#: Where published figures live.
PUBLISHED_DIR = Path(__file__).resolve().parent.parent / "results" / "published"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Point(_Strict):
    """One bar of a figure: a particle count, its track time [s] and particles per second.

    ``cores`` is the layout the measurement ran on where the source states one (``8r x 8t``:
    8 MPI ranks of 8 OpenMP threads); ``physics`` and ``reason`` are the source's own verdict
    on the point (impactx-benchmarks: ``correct``, ``incorrect``, ``unconverged``,
    ``model_mismatch``); empty where the source gives none.
    """

    particles: int = Field(gt=0)
    track_s: float = Field(gt=0)
    particles_per_s: float = Field(gt=0)
    cores: str = ""
    physics: str = ""
    reason: str = ""


class NotMeasured(_Strict):
    """A published cell without a time: its particle count, status and the source's reason
    (``unsupported_physics``, ``oom``, ``failed``)."""

    particles: int = Field(gt=0)
    status: str
    reason: str = ""


class Series(_Strict):
    """One code configuration of a figure.

    ``backend`` is the trackbench backend that measures the same code and variant here
    (``cheetah``: eager, ``cheetah-compiled``: torch.compile'd, ``impactx``, ``xsuite``,
    ``pyat``), None for a code trackbench does not run. ``math`` keeps IEEE and fast-math
    builds apart; ``not_measured`` holds the published cells without a time.
    """

    label: str
    config: str
    backend: str | None
    code: str
    variant: Literal["eager", "compiled", "native"]
    versions: dict[str, str]
    build: str = ""
    math: Literal["ieee", "fast-math"] = "ieee"
    points: list[Point]
    not_measured: list[NotMeasured] = []


class Figure(_Strict):
    """One published figure: what it measures and its series (first series = the baseline
    of the figure's speed-up labels)."""

    title: str
    scenario: str
    device: Literal["cpu", "cuda"]
    threads: int | None
    dtype: Literal["float32", "float64"]
    hardware: str
    quantity: str
    baseline: str
    particles: list[int]
    series: list[Series]
    #: why no scenario file states this figure's scenario (it cannot be reproduced yet)
    not_reproducible: str = ""
    #: the bundled scenario that states the figure's scenario at the source's settings
    lattice: str = ""


class Source(_Strict):
    """Where the figures come from."""

    paper: str
    repository: str
    tag: str
    commit: str
    file: str
    file_commit: str
    layout: str
    host: str
    timer: str
    statistic: str
    #: the measuring machine as the source records it (CPU model, cores per socket, GPU, ...)
    machine: dict[str, str] = {}
    #: the source's validation rule, where it states one
    validation: str = ""
    #: configurations of the source record that this file does not carry, and why
    omitted: dict[str, str] = {}


class Published(_Strict):
    """A published comparison: its source and its figures by id (``fig1``, ...)."""

    source: Source
    figures: dict[str, Figure]

    def value(self, figure: str, backend: str, particles: int) -> Point | None:
        """The published point of a backend's series at a particle count (None if absent)."""
        for series in self.figures[figure].series:
            if series.backend == backend:
                for point in series.points:
                    if point.particles == particles:
                        return point
        return None


def load(name: str = "napac25", directory: Path = PUBLISHED_DIR) -> Published:
    """Load and validate ``results/published/<name>.yaml``."""
    path = Path(directory) / f"{name}.yaml"
    return Published(**yaml.safe_load(path.read_text()))


# ----------------------------------------------------------------------- napac25 extraction

#: The paper's figures as ``napac25/plot_scenarios.py`` draws them (host ``perlmutter``):
#: scenario prefix, particle counts, and the configurations shown, in the plot's order.
NAPAC25_FIGURES: dict[str, dict[str, Any]] = {
    "fig1": {
        "title": "HTU beamline, 1 CPU core, FP32 (NAPAC2025 TUP101 Fig. 1)",
        "scenario": "htu", "device": "cpu", "threads": 1, "dtype": "float32",
        "hardware": "one core of an AMD EPYC 7763 (NERSC Perlmutter GPU node)",
        "particles": [1_000, 10_000, 100_000, 1_000_000],
        "configs": {"cheetah-1cpu": ("Cheetah", "cheetah", "eager"),
                    "cheetah-1cpu-inductor-fm-simd": ("Cheetah: compiled",
                                                      "cheetah-compiled", "compiled"),
                    "impactx-1cpu-fm-simd": ("ImpactX", "impactx", "native")},
    },
    "fig2": {
        "title": "HTU beamline, one GPU, FP32 (NAPAC2025 TUP101 Fig. 2)",
        "scenario": "htu", "device": "cuda", "threads": None, "dtype": "float32",
        "hardware": "one NVIDIA A100-SXM4-80GB (NERSC Perlmutter GPU node)",
        "particles": [10_000, 100_000, 1_000_000, 10_000_000],
        "configs": {"cheetah-cuda": ("Cheetah", "cheetah", "eager"),
                    "cheetah-cuda-inductor-fm": ("Cheetah: compiled", "cheetah-compiled",
                                                 "compiled"),
                    "impactx-cuda-fm": ("ImpactX", "impactx", "native")},
    },
    "fig3": {
        "title": "Space charge, 256^3 mesh, 10^6 particles, FP64, 1 CPU core and one GPU "
                 "(NAPAC2025 TUP101 Fig. 3)",
        "scenario": "napac25_space_charge", "device": "cpu", "threads": 1,
        "dtype": "float64",
        "hardware": "one core of an AMD EPYC 7763; one NVIDIA A100-SXM4-80GB (Perlmutter)",
        "particles": [1_000_000],
        "configs": {"cheetah-1cpu-dp": ("Cheetah CPU", "cheetah", "eager"),
                    "cheetah-1cpu-inductor-fm-simd-dp": ("Cheetah CPU: compiled",
                                                         "cheetah-compiled", "compiled"),
                    "impactx-1cpu-fm-simd-dp": ("ImpactX CPU", "impactx", "native")},
        # the GPU bars of the same figure
        "gpu_configs": {"cheetah-cuda-dp": ("Cheetah GPU", "cheetah", "eager"),
                        "cheetah-cuda-inductor-fm-dp": ("Cheetah GPU: compiled",
                                                        "cheetah-compiled", "compiled"),
                        "impactx-cuda-fm-dp": ("ImpactX GPU", "impactx", "native")},
    },
}
NAPAC25_SOURCE = {
    "paper": "A. Huebl et al., Towards Differentiable Beam Dynamics Modeling in "
             "BLAST/ImpactX, NAPAC2025, TUP101",
    "repository": "BLAST-ImpactX/impactx-benchmarks",
    "tag": "napac25",
    "commit": "423e872003fa6d1c4d257e8c60f1481422e87399",
    "file": "napac25/timings.yaml",
    "file_commit": "2c151351e00c29f09518f330ce96ae38334d3f8b",
    "layout": "napac25/plot_scenarios.py",
    "host": "perlmutter",
    "timer": "time.process_time_ns around one track (CPU time of the process, also for "
             "GPU runs)",
    "statistic": "minimum over 5 runs, each a fresh process tracking once (compiled "
                 "Cheetah: after one untimed compiling call)",
}


def _versions(config: dict[str, Any]) -> dict[str, str]:
    packages = {p["name"]: str(p["version"]) for p in config.get("env_packages", [])}
    out = {}
    if config["code"] == "cheetah":
        out["cheetah-accelerator"] = packages.get("cheetah-accelerator", config["version"])
        out["torch"] = packages.get("pytorch", packages.get("torch", "?"))
    else:
        out["impactx"] = (f"{config['version']} branch of {config['gh_owner']}/impactx "
                          f"(conda env package impactx {packages.get('impactx', '?')})")
    out["python"] = packages.get("python", "?")
    return out


def _build(config: dict[str, Any]) -> str:
    if config["code"] == "impactx":
        return (f"ImpactX_COMPUTE={config['ImpactX_COMPUTE']} "
                f"ImpactX_PRECISION={config.get('ImpactX_PRECISION', 'SINGLE')} "
                f"ImpactX_SIMD={config['ImpactX_SIMD']} CXXFLAGS='{config['CXXFLAGS']}' "
                f"OMP_NUM_THREADS={config.get('OMP_NUM_THREADS', '1')}")
    compile_note = ("eager" if config["compile_mode"] == "none" else
                    f"torch.compile(mode={config['compile_mode']}, "
                    f"backend={config['compile_backend']}"
                    + (", fast-math" if config.get("compile_backend_config") else "") + ")")
    threads = config.get("OMP_NUM_THREADS")
    return f"{compile_note}, dtype {config['dtype']}, device {config['device']}" + (
        f", OMP_NUM_THREADS={threads}" if threads else "")


def _series(timings: dict, host: str, scenario: str, particles: list[int],
            configs: dict[str, tuple[str, str, str]]) -> list[dict]:
    prefix = "htu" if scenario == "htu" else "spacecharge"
    out = []
    for config_name, (label, backend, variant) in configs.items():
        entry = timings[config_name][host]
        points = []
        for n in particles:
            data = entry[f"{prefix}_{n}"]
            points.append({"particles": int(data["npart"]),
                           "track_s": data["track_ns"] * 1e-9,
                           "particles_per_s": float(data["push_per_sec"])})
        out.append({"label": label, "config": config_name, "backend": backend,
                    "code": entry["config"]["code"], "variant": variant,
                    "versions": _versions(entry["config"]), "build": _build(entry["config"]),
                    "points": points})
    return out


def extract_napac25(timings_path: Path) -> dict[str, Any]:
    """The published file's mapping from the benchmark's ``timings.yaml``."""
    timings = yaml.safe_load(Path(timings_path).read_text())
    host = NAPAC25_SOURCE["host"]
    figures: dict[str, Any] = {}
    for fig, spec in NAPAC25_FIGURES.items():
        series = _series(timings, host, spec["scenario"], spec["particles"], spec["configs"])
        common = {k: spec[k] for k in ("title", "scenario", "threads", "dtype", "hardware",
                                       "particles")}
        figures[fig] = common | {"device": spec["device"], "quantity": "particles_per_s",
                                 "baseline": series[0]["config"], "series": series}
        if "gpu_configs" in spec:
            gpu = _series(timings, host, spec["scenario"], spec["particles"],
                          spec["gpu_configs"])
            figures[f"{fig}_gpu"] = common | {
                "title": spec["title"] + ", GPU bars", "device": "cuda", "threads": None,
                "quantity": "particles_per_s", "baseline": gpu[0]["config"], "series": gpu}
    return {"source": dict(NAPAC25_SOURCE), "figures": figures}


# ------------------------------------------------------------ impactx-benchmarks extraction

#: The benchmark's 2026 scenarios and the bundled scenario files that state them (or why none).
IB_SCENARIOS: dict[str, tuple[str, str, str]] = {
    # name: (title, bundled scenario, reason it cannot be stated)
    "fodo_chromatic": ("chromatic FODO", "bench_fodo_chromatic", ""),
    "fodo_exact": ("exact FODO, hot beam", "bench_fodo_exact_hot", ""),
    "htu": ("HTU beamline (chromatic)", "bench_htu", ""),
    "htu_spin": ("HTU beamline (spin depolarization)", "bench_htu_spin", ""),
    "spacecharge": ("3D space charge", "bench_spacecharge", ""),
    "spacecharge_2p5d": ("2.5D space charge", "bench_spacecharge_2p5d", ""),
}
#: Codes of the benchmark that trackbench runs, by (code, compiled).
IB_BACKENDS: dict[tuple[str, bool], str] = {
    ("impactx", False): "impactx", ("cheetah", False): "cheetah",
    ("cheetah", True): "cheetah-compiled", ("xsuite", False): "xsuite", ("pyat", False): "pyat",
}
IB_LABELS = {"impactx": "ImpactX", "cheetah": "Cheetah", "xsuite": "Xsuite", "pyat": "pyAT",
             "pyorbit": "PyORBIT3", "scibmad": "SciBmad.jl", "bmad": "Bmad", "elegant": "Elegant",
             "helix": "HELIX", "synergia": "Synergia", "impactz": "IMPACT-Z"}
IB_SOURCE = {
    "paper": "none: the benchmark repository's own published record (2026)",
    "repository": "BLAST-ImpactX/impactx-benchmarks",
    "tag": "",
    "commit": "8c56c56adda3ea9fe876b8118bcef425900d5055",
    "file": "history/20260908T221158Z_perlmutter/perlmutter.yaml",
    "file_commit": "8c56c56adda3ea9fe876b8118bcef425900d5055",
    "layout": "benchmarks/registry.py (codes, scenarios, configurations), "
              "benchmarks/plotting.py (figures)",
    "host": "perlmutter",
    "timer": "time.perf_counter_ns (wall clock) around one track, after one untimed warm-up "
             "track in the same process (scenarios/_obs.py Timer, the per-code run scripts)",
    "statistic": "CPU: each (MPI ranks x OpenMP threads) layout with ranks x threads <= the "
                 "core budget probed once, the fastest then timed --runs times in fresh "
                 "processes, minimum kept (benchmarks/runner.py run_one); GPU: one process, "
                 "minimum over --runs",
    "validation": "benchmarks/validate.py: moments sigma_x, sigma_y, emit_x, emit_y (+ sigma_t "
                  "with space charge; sigma_sx, sigma_sy with spin) against ImpactX double "
                  "precision IEEE (impactx-cpu-simd-dp) at the same N, relative tolerance per "
                  "scenario (fodo 5e-3, htu 3e-2, htu_spin 1.5e-1, space charge 5e-2) widened "
                  "by 3/sqrt(N); classes correct, incorrect, unconverged (single precision out "
                  "of tolerance while its double-precision sibling is correct), model_mismatch "
                  "(declared model differs); harness/benchmark_rule.py restates it",
}


def _ib_config(name: str) -> dict[str, Any]:
    """A configuration's properties from its name, as ``benchmarks/registry.py`` builds them:
    ``<code>-<device>[-compiled|-simd]-<dp|sp>[-fm]``."""
    parts = name.split("-")
    fast_math = parts[-1] == "fm"
    if fast_math:
        parts = parts[:-1]
    if parts[-1] not in ("dp", "sp") or parts[1] not in ("cpu", "cuda"):
        raise ValueError(f"configuration {name!r}: expected <code>-<cpu|cuda>[-...]-<dp|sp>[-fm]")
    return {"code": parts[0], "device": parts[1], "compiled": "compiled" in parts[2:-1],
            "simd": "simd" in parts[2:-1],
            "dtype": "float64" if parts[-1] == "dp" else "float32", "fast_math": fast_math}


def _ib_machine(metadata: dict[str, Any]) -> dict[str, str]:
    host = metadata.get("host", {})
    cpu = host.get("cpu", {})
    gpus = metadata.get("gpu", []) or []
    out = {"cpu_model": str(host.get("cpu_model", cpu.get("Model name", "?"))),
           "sockets": str(cpu.get("Socket(s)", "?")),
           "cores_per_socket": str(cpu.get("Core(s) per socket", "?")),
           "threads_per_core": str(cpu.get("Thread(s) per core", "?")),
           "simd": str(cpu.get("simd", "?")), "os": str(host.get("os", "?")),
           "timestamp_utc": str(host.get("timestamp_utc", "?"))}
    if gpus:
        first = gpus[0]
        out["gpu"] = f"{len(gpus)} x {first.get('name', '?')} ({first.get('memory_total', '?')})"
    return out


def extract_impactx_benchmarks(record_path: Path) -> dict[str, Any]:
    """The published file's mapping from a machine record of impactx-benchmarks
    (``history/<utc>_<machine>/<machine>.yaml``): keys ``machine``, ``metadata`` and
    ``results`` (configuration -> ``<scenario>_<N>`` -> cell with ``cores``, ``npart``,
    ``track_ns`` [ns], ``push_per_sec`` [1/s], ``status``, ``physics``, ``reason``)."""
    data = yaml.safe_load(Path(record_path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f"{record_path}: expected a machine record with a 'results' mapping")
    metadata = data.get("metadata", {}) or {}
    machine = _ib_machine(metadata)
    versions = {str(k): str(v) for k, v in (metadata.get("code_version", {}) or {}).items()}
    cores = machine["cores_per_socket"]
    source = dict(IB_SOURCE) | {"host": str(data.get("machine", IB_SOURCE["host"])),
                                "machine": machine}
    figures: dict[str, dict[str, Any]] = {}
    for config_name, cells in data["results"].items():
        cfg = _ib_config(config_name)
        for scenario in IB_SCENARIOS:
            mine = {k: v for k, v in cells.items() if v.get("scenario") == scenario}
            if not mine:
                continue
            math = "fast-math" if cfg["fast_math"] else "ieee"
            precision = "fp64" if cfg["dtype"] == "float64" else "fp32"
            fm = 'fm' if cfg['fast_math'] else 'ieee'
            fig_id = f"{scenario}_{cfg['device']}_{precision}_{fm}"
            title, lattice, why = IB_SCENARIOS[scenario]
            if cfg["device"] == "cpu":
                hardware = (f"one socket ({cores} cores) of a {machine['sockets']}-socket "
                            f"{machine['cpu_model']} node (NERSC Perlmutter); per point the "
                            f"fastest MPI ranks x OpenMP threads layout within {cores} cores "
                            "(its 'cores'): many-core, not per core")
            else:
                hardware = f"one GPU of {machine.get('gpu', '?')} (NERSC Perlmutter)"
            fig = figures.setdefault(fig_id, {
                "title": f"{title}, {cfg['device'].upper()}, "
                         f"{'FP64' if cfg['dtype'] == 'float64' else 'FP32'}, {math} "
                         "(impactx-benchmarks, Perlmutter 2026-09-08)",
                "scenario": lattice or scenario, "device": cfg["device"], "threads": None,
                "dtype": cfg["dtype"], "hardware": hardware, "quantity": "particles_per_s",
                "baseline": "", "particles": [], "series": [],
                "not_reproducible": why, "lattice": lattice})
            points, missing = [], []
            for cell in sorted(mine.values(), key=lambda c: int(c["npart"])):
                n = int(cell["npart"])
                if cell.get("status") == "supported" and cell.get("track_ns"):
                    points.append({"particles": n, "track_s": float(cell["track_ns"]) * 1e-9,
                                   "particles_per_s": float(cell["push_per_sec"]),
                                   "cores": str(cell.get("cores") or ""),
                                   "physics": str(cell.get("physics") or ""),
                                   "reason": str(cell.get("reason") or "")})
                else:
                    missing.append({"particles": n, "status": str(cell.get("status")),
                                    "reason": " ".join(str(cell.get("reason") or "").split())})
                if n not in fig["particles"]:
                    fig["particles"].append(n)
            code = cfg["code"]
            backend = IB_BACKENDS.get((code, cfg["compiled"]))
            label = IB_LABELS.get(code, code) + (": compiled" if cfg["compiled"] else "")
            fig["series"].append({
                "label": label + (" (fast-math)" if cfg["fast_math"] else ""),
                "config": config_name, "backend": backend, "code": code,
                "variant": "compiled" if cfg["compiled"] else (
                    "eager" if code == "cheetah" else "native"),
                "versions": {code: versions.get(code, "?")},
                "build": (f"{'SIMD, ' if cfg['simd'] else ''}"
                          f"{'torch.compile (Inductor), ' if cfg['compiled'] else ''}"
                          f"{cfg['dtype']}, {math}"),
                "math": math, "points": points, "not_measured": missing})
    for fig in figures.values():
        fig["particles"].sort()
        fig["series"].sort(key=lambda s: (s["code"] != "impactx", s["backend"] is None,
                                          s["config"]))
        fig["baseline"] = fig["series"][0]["config"]
    return {"source": source, "figures": dict(sorted(figures.items()))}


IB_HEADER = """\
# Published numbers of BLAST-ImpactX/impactx-benchmarks (2026), newest Perlmutter run
# history/20260908T221158Z_perlmutter/perlmutter.yaml at commit 8c56c56a, extracted by
# `python -m harness.published impactx-benchmarks <that file>` (harness/published.py): do not
# edit by hand. track_s = the record's track_ns * 1e-9; particles_per_s = its push_per_sec;
# cores = its layout (MPI ranks x OpenMP threads); physics/reason = its own verdict.
# CPU figures are one 64-core socket (many-core, the fastest layout per point), not per core;
# GPU figures one A100. Cells' observables (their moments) are not carried.
"""

HEADER = """\
# Published figures of NAPAC2025 TUP101, extracted by `python -m harness.published napac25
# <impactx-benchmarks checkout at tag napac25>/napac25/timings.yaml` (harness/published.py):
# do not edit by hand. track_s = the benchmark's track_ns * 1e-9; particles_per_s = its
# push_per_sec (particles / track time).
"""


def main(argv: list[str] | None = None) -> int:
    """Extract a published file from its source record."""
    parser = argparse.ArgumentParser(description="Extract published figures as data.")
    parser.add_argument("name", choices=["napac25", "impactx-benchmarks"])
    parser.add_argument("timings", type=Path,
                        help="napac25/timings.yaml, or history/<utc>_<machine>/<machine>.yaml")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--note", default="", help="a line added to the header comment "
                        "(e.g. what the copy of the record held)")
    args = parser.parse_args(argv)
    out = args.out or PUBLISHED_DIR / f"{args.name}.yaml"
    try:
        if args.name == "napac25":
            data, header = extract_napac25(args.timings), HEADER
        else:
            data, header = extract_impactx_benchmarks(args.timings), IB_HEADER
    except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
        print(f"error: {args.timings}: {exc}", file=sys.stderr)
        return 2
    Published(**data)  # validates
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.note:
        header += "".join(f"# {line}\n" for line in args.note.splitlines())
    out.write_text(header + yaml.safe_dump(data, sort_keys=False, width=100))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
