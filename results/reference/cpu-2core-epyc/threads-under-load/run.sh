#!/bin/bash
# usage: threads_exp.sh LABEL  (env OMP_WAIT_POLICY etc. inherited); runs with and without one competing process
cd /work/main
for load in idle busy; do
  if [ $load = busy ]; then (exec python3 -c "while True: pass") & LP=$!; sleep 1; fi
  out=/tmp/thr-$1-$load; rm -rf $out
  .venv/bin/trackbench run ${SCEN:-fodo_exact} --backends inhouse --particles 1e6 --threads 1,all --repeat 7 --no-report --no-fail --out $out > $out.log 2>&1
  [ $load = busy ] && kill $LP
  .venv/bin/python - "$out" "$1" "$load" <<'PY'
import sys, pandas as pd
d = pd.read_csv(sys.argv[1] + "/results.csv")
d = d[d.backend == "inhouse"]
cols = [c for c in d.columns if c in ("threads", "time_median_s", "time_min_s", "time_max_s", "spread", "status")]
print(sys.argv[2], sys.argv[3]); print(d[cols].to_string(index=False))
PY
done
