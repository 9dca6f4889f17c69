#!/usr/bin/env bash
# Copies sweeps' records, ids files and training records into DEST and regenerates the reports
# there, e.g. to commit the mini benchmark:
#   bash benchmarks/collect_sweep.sh workdirs/mini_cifar10 benchmarks/results/mini_cifar10
# Several sweeps that share DEST's reports (the CPU map's grids) go in one comma-separated list;
# their records are pooled in one results.jsonl, the first one's config is sweep_config.json and
# each other's sweep_config_<its directory's name>.json:
#   bash benchmarks/collect_sweep.sh workdirs/cpu_map/plain,workdirs/cpu_map/ablations \
#       benchmarks/results/cpu_map
# With KEEP_MODELS=1 each original's claim (config.json) and its newest checkpoint go too (a
# CPU-map model is about 1 MB), so a later session restores the trained models instead of
# training them again: cp -r DEST/originals/. WORKDIR/originals/ (the sweep resumes a finished
# training run from its checkpoint, i.e. loads it).
set -euo pipefail
workdirs=${1:?usage: collect_sweep.sh WORKDIR[,WORKDIR...] DEST}
dest=${2:?usage: collect_sweep.sh WORKDIR[,WORKDIR...] DEST}
IFS=',' read -ra sweeps <<< "$workdirs"
for workdir in "${sweeps[@]}"; do
  # A sweep run as cluster tasks may hold records in results.d/ that no reports job merged yet
  # (rem_jax.experiments.store): into results.jsonl first (nothing to do for other sweeps).
  if [ -d "$workdir/results.d" ]; then
    python -c 'import sys; from rem_jax.experiments import store; store.ResultStore(sys.argv[1]).merge()' \
      "$workdir/results.jsonl"
  fi
  [ -f "$workdir/results.jsonl" ] || { echo "collect_sweep.sh: $workdir/results.jsonl: no such file" >&2; exit 1; }
done
# The settings DEST's claims.md compares (reports' --across, kept in DEST/across.json) outlive
# the copy: the regenerated claims.md compares them again.
across=$(cat "$dest/across.json" 2>/dev/null || true)
rm -rf "$dest"
mkdir -p "$dest"
[ -z "$across" ] || printf '%s\n' "$across" > "$dest/across.json"
for index in "${!sweeps[@]}"; do
  workdir=${sweeps[$index]}
  cat "$workdir/results.jsonl" >> "$dest/results.jsonl"
  if [ "$index" -eq 0 ]; then
    cp "$workdir/config.json" "$dest/sweep_config.json"
  else
    cp "$workdir/config.json" "$dest/sweep_config_$(basename "$workdir").json"
  fi
  for ids in "$workdir"/originals/*/corruption.json; do
    key=$(basename "$(dirname "$ids")")
    # An original still training (a sweep stopped mid-run) has no train.json and no record yet:
    # nothing to collect; the sweep resumes it from its own workdir.
    [ -f "$workdir/originals/$key/train.json" ] || continue
    mkdir -p "$dest/originals/$key"
    cp "$ids" "$workdir/originals/$key/train.json" "$dest/originals/$key/"
    if [ "${KEEP_MODELS:-0}" = 1 ]; then
      newest=$(ls "$workdir/originals/$key/checkpoints" | sort -n | tail -1)
      cp "$workdir/originals/$key/config.json" "$dest/originals/$key/"
      mkdir -p "$dest/originals/$key/checkpoints"
      cp -r "$workdir/originals/$key/checkpoints/$newest" "$dest/originals/$key/checkpoints/"
    fi
  done
done
python -m rem_jax.experiments.reports --results="$dest/results.jsonl" --outdir="$dest"
