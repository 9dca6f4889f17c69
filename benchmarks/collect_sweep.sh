#!/usr/bin/env bash
# Copies a sweep's records, ids files and training records into DEST and regenerates its
# reports there, e.g. to commit the mini benchmark:
#   bash benchmarks/collect_sweep.sh workdirs/mini_cifar10 benchmarks/results/mini_cifar10
set -euo pipefail
workdir=${1:?usage: collect_sweep.sh WORKDIR DEST}
dest=${2:?usage: collect_sweep.sh WORKDIR DEST}
rm -rf "$dest"
mkdir -p "$dest"
cp "$workdir/results.jsonl" "$dest/"
cp "$workdir/config.json" "$dest/sweep_config.json"
for ids in "$workdir"/originals/*/corruption.json; do
  key=$(basename "$(dirname "$ids")")
  mkdir -p "$dest/originals/$key"
  cp "$ids" "$workdir/originals/$key/train.json" "$dest/originals/$key/"
done
python -m rem_jax.experiments.reports --results="$dest/results.jsonl" --outdir="$dest"
