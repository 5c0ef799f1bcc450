"""Cold and warm compile time of the in-house tracker for every bundled lattice.

Each lattice is compiled in a fresh Python process (``python -m benchmarks.compile_times
--one NAME``), first with ``TORCHINDUCTOR_CACHE_DIR`` pointing at an empty temporary
directory (cold), then again in a new process with the cache that run left (warm). A run
times, in seconds of wall clock:

* ``import_s``: importing the in-house backend and torch (what a case process pays first);
* ``prepare_s``: planning the scenario and building the tracker's constant maps;
* ``compile_s``: the first compiled track of ``--particles`` particles, that is tracing,
  code generation (or loading it from the cache), the first execution and the checks of
  :class:`backends.inhouse.compiled.CompiledForward` -- the time a user waits before the
  first timed track;
* ``total_s``: the whole process, from interpreter start to exit;
* ``compile_cpu_s`` and ``total_cpu_s``: the CPU time (user and system, the process and its
  children: the C++ compiler, inductor's probes) of the first track and of the whole
  process. On a machine shared with other jobs, wall times grow with the load while CPU
  times stay close to what an idle machine would take.

Usage::

    python -m benchmarks.compile_times [--lattices a,b] [--particles 4096] [--out FILE]

writes one CSV row per lattice and pass (``cold``/``warm``), with the machine and its load
(1-minute load average before each run) so that numbers from a busy machine are read as such.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Columns of the CSV.
FIELDS = ("lattice", "pass", "import_s", "prepare_s", "compile_s", "total_s", "compile_cpu_s",
          "total_cpu_s", "isa_record", "kernels",
          "segments", "compiled", "particles", "load_1min", "cpus", "machine", "torch")


def bundled() -> list[str]:
    """Names of the bundled lattices (``lattices/*.yaml``)."""
    return sorted(p.stem for p in (ROOT / "lattices").glob("*.yaml"))


def _cpu(who: int | None = None) -> float:
    """CPU seconds (user and system) of this process and its waited-for children, or of the
    children only (``who=resource.RUSAGE_CHILDREN``)."""
    import resource

    if who is not None:
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime
    return sum(_cpu(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def one(name: str, particles: int) -> dict:
    """Compile and track lattice ``name`` in this process; the timings as a dict."""
    t0 = time.perf_counter()
    import torch

    from backends.inhouse import InhouseBackend
    from harness.model.load import load_scenario
    from harness.model.particles import generate

    t1 = time.perf_counter()
    torch.set_num_threads(1)
    scenario = load_scenario(name)
    prepared = InhouseBackend().prepare(scenario, "cpu", "float64", compile=True)
    beam = generate(scenario.beam, particles)
    handle = prepared.inject(beam)
    record = (ROOT / ".cache" / "vec-isa.json").exists()
    t2, cpu2 = time.perf_counter(), _cpu()
    prepared.run(handle)
    t3, cpu3 = time.perf_counter(), _cpu()
    forward = prepared.forward
    return {"import_s": t1 - t0, "prepare_s": t2 - t1, "compile_s": t3 - t2,
            "compile_cpu_s": cpu3 - cpu2, "isa_record": record,
            "kernels": forward.kernels if forward is not None else 0,
            "segments": len(forward.segments) if forward is not None else 0,
            "compiled": bool(prepared.compiled), "torch": torch.__version__}


def measure(name: str, cache: str, particles: int) -> dict:
    """One fresh process compiling ``name`` with inductor cache ``cache``."""
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, OMP_NUM_THREADS="1")
    load = os.getloadavg()[0]
    import resource

    start, cpu_start = time.perf_counter(), _cpu(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "benchmarks.compile_times", "--one", name,
                           "--particles", str(particles)], cwd=ROOT, env=env, check=False,
                          capture_output=True, text=True)
    total = time.perf_counter() - start
    total_cpu = _cpu(resource.RUSAGE_CHILDREN) - cpu_start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{name}: compile run failed: {tail}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row.update(lattice=name, total_s=total, total_cpu_s=total_cpu, load_1min=load,
               particles=particles)
    return row


def main(argv: list[str] | None = None) -> int:
    """Measure every lattice cold then warm; print a table and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lattices", default="", help="comma-separated names (all bundled)")
    parser.add_argument("--particles", type=int, default=4096)
    parser.add_argument("--out", default="", help="CSV file to write")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.particles)))
        return 0
    names = [n for n in args.lattices.split(",") if n] or bundled()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
            for which in ("cold", "warm"):
                row = measure(name, cache, args.particles)
                row.update({"pass": which, "cpus": os.cpu_count(), "machine": machine})
                rows.append(row)
                print(f"{name:28s} {which}: import {row['import_s']:5.2f} s, compile "
                      f"{row['compile_s']:6.2f} s (CPU {row['compile_cpu_s']:6.2f} s), process "
                      f"{row['total_s']:6.2f} s (CPU {row['total_cpu_s']:6.2f} s), "
                      f"{row['kernels']} kernels, load {row['load_1min']:.2f}", flush=True)
    if args.out:
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v)
                                 for k, v in row.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
