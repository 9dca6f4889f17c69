#!/usr/bin/env bash
# One rung up the scale (issue 34 §3): seed 0 at 6,000 images in the paper's proportions, only
# the cells of the claims the proportions grid could not confirm, with the methods their rules
# compare. Resumable: each step skips the cells its workdir has recorded. From the repository
# root, after restoring the committed originals (docs/benchmarks.md, "The map in the paper's
# proportions"):
#   setsid nohup bash benchmarks/run_rung.sh > /tmp/rung.log 2>&1 &
# then commit benchmarks/results/cpu_map_rung/ and benchmarks/results/cpu_map_proportions/.
set -euo pipefail
run() {  # run GRID WORKDIR ONLY
  python launch.py --config=configs/cpu_map.py:"$1" --workdir=workdirs/cpu_map/"$2" \
    --config.only="$3"
}
# The originals first, with their No UL cells: the preconditions decide whether the rest runs.
run rung rung 'method=no_ul'
run rung,inter_class rung_inter_class 'method=no_ul'
# "Retrain, CF and SCRUB fail at partial discovery, most at high regularity": every task and
# rate; Potion's claim: Potion on every cell (it reads the random swap against No UL).
run rung rung 'method=retrain,cf,scrub,potion'
run rung,inter_class rung_inter_class 'method=retrain,cf,scrub,potion'
# Potion's claim also sets Potion on the poison at rate 0.2 against the median of every method
# there: the rest of the methods on that one cell (the narrower version of the rule's median).
run rung rung 'method=rem,ascent,npo,bad_teacher;task=poison_trigger;discovery_rate=0.2'
KEEP_MODELS=1 bash benchmarks/collect_sweep.sh workdirs/cpu_map/rung,workdirs/cpu_map/rung_inter_class \
  benchmarks/results/cpu_map_rung
# The proportions grid's claims.md compares the rung (its across.json): regenerate it too.
python -m rem_jax.experiments.reports --results=benchmarks/results/cpu_map_proportions/results.jsonl \
  --outdir=benchmarks/results/cpu_map_proportions
