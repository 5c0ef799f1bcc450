#!/usr/bin/env bash
# gpu-check: verify the whole GPU path in one command (make gpu-check).
#
# 1. the CUDA tests (pytest -m cuda, and every test with "cuda" in its name);
# 2. a short CUDA matrix: the in-house tracker compiled and eager, Cheetah (and Cheetah
#    compiled where that backend is registered), float32 and float64, 1e5..1e7 particles,
#    on fodo_linear and fodo_exact, plus one space-charge case (fodo_space_charge, 1e5);
# 3. one report over all of it (DIR/report).
#
# Sized to finish within about 8 minutes on one GPU (3 timed repeats, a time limit per
# case). Without a usable CUDA device it prints why and exits 0 (nothing to check).
# Environment: BIN (the virtualenv's bin directory, default .venv/bin), OUT (the run
# directory, default results/runs/gpu-check-<UTC time>), GPU_CHECK_TIMEOUT (per case [s]).
set -u
BIN=${BIN:-.venv/bin}
PY="$BIN/python"
TB="$BIN/trackbench"
OUT=${OUT:-results/runs/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}
CASE_TIMEOUT=${GPU_CHECK_TIMEOUT:-120}

if ! "$PY" - <<'PYEOF'
import sys
try:
    import torch
except ImportError as error:
    print(f"gpu-check: skipped: torch cannot be imported ({error})")
    sys.exit(1)
if not torch.cuda.is_available():
    print(f"gpu-check: skipped: no usable CUDA device (torch {torch.__version__}, "
          f"built for CUDA {torch.version.cuda or 'none'}; torch.cuda.is_available() is False)")
    sys.exit(1)
print(f"gpu-check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}")
PYEOF
then
    exit 0
fi

mkdir -p "$OUT"
status=0
started=$(date +%s)
log() { echo "gpu-check [$(( $(date +%s) - started )) s]: $*"; }

log "CUDA tests"
"$PY" -m pytest -q -m cuda tests 2>&1 | tee "$OUT/pytest-marked.txt" | tail -3
rc=${PIPESTATUS[0]}
[ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && status=1   # 5: no test carries the marker
"$PY" -m pytest -q -k cuda tests 2>&1 | tee "$OUT/pytest-named.txt" | tail -3
rc=${PIPESTATUS[0]}
[ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && status=1

backends=inhouse,cheetah
if "$PY" -c "import sys; from backends.registry import backend_classes; \
sys.exit(0 if 'cheetah-compiled' in backend_classes() else 1)" 2>/dev/null; then
    backends="$backends,cheetah-compiled"
fi

run() {  # run NAME ENV [trackbench run arguments...]; ENV e.g. TRACKBENCH_INHOUSE_COMPILE=0
    local name=$1 environment=$2; shift 2
    log "matrix: $name"
    env $environment "$TB" run "$@" --device cuda --repeat 3 --timeout "$CASE_TIMEOUT" --no-report \
        --out "$OUT/$name" || status=1
}
run compiled "" fodo_linear fodo_exact --backends "$backends" --dtype float32,float64 \
    --particles 1e5,1e6,1e7
run eager TRACKBENCH_INHOUSE_COMPILE=0 fodo_exact --backends inhouse \
    --dtype float32,float64 --particles 1e5,1e6,1e7
run space-charge "" fodo_space_charge --backends inhouse,cheetah --dtype float64 --particles 1e5

log "report"
dirs=()
for name in compiled eager space-charge; do
    [ -f "$OUT/$name/results.jsonl" ] && dirs+=("$OUT/$name")
done
if [ ${#dirs[@]} -gt 0 ]; then
    "$TB" report "${dirs[@]}" --out "$OUT/report" || status=1
else
    log "no run produced results"; status=1
fi
log "done (exit $status): $OUT/report"
exit $status
