"""The columns of ``tuning`` rows and of the trace files, with units.

A tuning row (``kind`` ``tuning``) carries the columns every row has
(:data:`harness.rows.COMMON`: ``case_id`` ends with the variant ``[P<size>-]<method>``,
``particles`` is the macro-particle count per evaluation) and the ones below. Columns
absent from a row (e.g. of an ``unsupported``, ``failed`` or ``timeout`` case) were not
measured; such a case keeps its trace file, whose lines are :data:`TRACE`.
"""

from __future__ import annotations

#: Columns of ``tuning`` rows (one row per problem × method × backend).
TUNING: dict[str, str] = {
    "method": "method of harness.tuning.methods.METHODS (lbfgs, adam, neldermead, "
              "xopt-neldermead, xopt-bo)",
    "family": "gradient (needs the reverse-mode AD gradient) | gradient-free",
    "library": "where the method comes from: scipy | torch | xopt",
    "problem": "size variant P<number of parameters> (empty: the block's only problem)",
    "n_params": "number of varied parameters P",
    "parameters": "the varied parameter names (list)",
    "budget": "most evaluations the method may make",
    "trace_file": "the case's trace, relative to the run directory (lines: TRACE)",
    "tolerance_objective": "objective at most this counts as reached (empty: not used)",
    "tolerance_parameters": "largest relative distance to the known optimum at most this "
                            "counts as reached (empty: not used)",
    "start_distance": "largest relative distance of the start point to the known optimum",
    "import_s": "interpreter start-up and imports of the child [s]",
    "setup_s": "objective set-up and one warm-up evaluation (a gradient for gradient "
               "methods; also on every pool worker) [s], not in the times below",
    "evaluation_workers": "evaluations run at once (1: one after the other; K: a pool of "
                          "K Dask workers, for a method that proposes K points per step)",
    "evaluation_notes": "what the evaluation pool noted (e.g. workers sharing cores)",
    "stop": "why the method stopped: reached | budget | ended: <the method's own message>",
    "evaluations": "objective evaluations made (a gradient evaluation counts as one)",
    "gradient_evaluations": "of which with the reverse-mode gradient",
    "optimise_s": "wall time of the whole optimisation [s]",
    "reached": "whether the final (best) point meets the tolerance: final_distance <= "
               "tolerance_parameters and best_objective <= tolerance_objective, where set",
    "evaluations_to_target": "evaluations up to and including the one that made the best "
                             "point meet it",
    "time_to_target_s": "wall time from the start of the optimisation to that evaluation "
                        "[s]",
    "best_objective": "lowest objective evaluated",
    "final_parameters": "parameter values of the best point (scenario file units; dict)",
    "final_distance": "largest relative distance of the best point to the known optimum "
                      "(empty: no known optimum)",
    "child_wall_s": "wall time of the child process when it wrote the row [s]",
}

#: Columns of a trace line (one JSON object per evaluation, in order).
TRACE: dict[str, str] = {
    "evaluation": "1, 2, ... in the order of evaluation",
    "kind": "value (objective only) | gradient (objective and its reverse-mode gradient)",
    "wall_s": "wall time since the start of the optimisation when it finished (a batch "
              "evaluated in parallel: when the batch came back) [s]",
    "objective": "the objective (empty: not finite, e.g. a lost beam)",
    "best": "lowest objective so far",
    "distance": "largest relative distance of the evaluated point to the known optimum",
    "process": "where it was evaluated, host:pid (a pool worker, or the case's process)",
}
