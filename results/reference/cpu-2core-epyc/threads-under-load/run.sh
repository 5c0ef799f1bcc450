#!/bin/bash
# usage (from the repository root): SCEN=fodo_exact run.sh LABEL
# The in-house tracker at 1e6 particles, --threads 1,all, idle and beside one CPU-bound process.
for load in idle busy; do
  if [ $load = busy ]; then (exec python3 -c "while True: pass") & LP=$!; sleep 1; fi
  out=results/runs/threads-$1-$load; rm -rf "$out"
  .venv/bin/trackbench run "${SCEN:-fodo_exact}" --backends inhouse --particles 1e6 \
    --threads 1,all --repeat 7 --no-report --no-fail --out "$out" > "$out.log" 2>&1
  [ $load = busy ] && kill $LP
done
