"""Published figures as data: ``results/published/<name>.yaml``.

A published file holds, per figure, where its numbers come from (repository, tag, commit,
file), the hardware, code versions, precision, threads and timer of the measurement, and
one series per code configuration with a point per particle count (track time [s] and
particles per second). Reports read the numbers from here; none is typed into a report.

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
    """One bar of a figure: a particle count, its track time [s] and particles per second."""

    particles: int = Field(gt=0)
    track_s: float = Field(gt=0)
    particles_per_s: float = Field(gt=0)


class Series(_Strict):
    """One code configuration of a figure.

    ``backend`` is the trackbench backend that measures the same code and variant here
    (``cheetah``: eager, ``cheetah-compiled``: torch.compile'd, ``impactx``).
    """

    label: str
    config: str
    backend: str
    code: str
    variant: Literal["eager", "compiled", "native"]
    versions: dict[str, str]
    build: str = ""
    points: list[Point]


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


HEADER = """\
# Published figures of NAPAC2025 TUP101, extracted by `python -m harness.published napac25
# <impactx-benchmarks checkout at tag napac25>/napac25/timings.yaml` (harness/published.py):
# do not edit by hand. track_s = the benchmark's track_ns * 1e-9; particles_per_s = its
# push_per_sec (particles / track time).
"""


def main(argv: list[str] | None = None) -> int:
    """Extract a published file from its source record."""
    parser = argparse.ArgumentParser(description="Extract published figures as data.")
    parser.add_argument("name", choices=["napac25"])
    parser.add_argument("timings", type=Path, help="napac25/timings.yaml of the source")
    parser.add_argument("--out", type=Path, default=PUBLISHED_DIR / "napac25.yaml")
    args = parser.parse_args(argv)
    data = extract_napac25(args.timings)
    Published(**data)  # validates
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(HEADER + yaml.safe_dump(data, sort_keys=False, width=100))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
