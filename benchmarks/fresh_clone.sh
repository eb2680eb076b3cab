#!/bin/bash
# What a new user's `make reproduce` does on this machine: a fresh clone of HEAD (its committed run records, an
# empty run cache) runs make reproduce's job; its wall time and what it leaves changed (`git status`) are written to
# results/benchmarks/fresh_clone_cpu.md. The environment is this checkout's .venv (creating one is not timed).
# Usage, from the repository root with the CPU otherwise idle:
#     flock /tmp/snlib-cpu.lock bash benchmarks/fresh_clone.sh
set -euo pipefail
repo=$(pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
git clone -q "$repo" "$scratch/snlib"
commit=$(git -C "$scratch/snlib" rev-parse --short HEAD)
cd "$scratch/snlib"
start=$(date +%s)
PYTHONPATH="$PWD" SNLIB_CACHE="$scratch/cache" "$repo/.venv/bin/python" -m snlib reproduce --preset cpu --dataset synthetic \
    --data-root data --name synthetic > "$scratch/log.txt" 2>&1 || { tail -20 "$scratch/log.txt"; exit 1; }
wall=$(( $(date +%s) - start ))
changed=$(git status --short)
tables=$(echo "$changed" | grep -E '\.(csv|md|png)$' || true)   # what must come back byte for byte
retrained=$("$repo/.venv/bin/python" -c '
import json
for c in json.load(open("results/cpu/synthetic/manifest.json")).get("retrained_runs", {}).values():
    print("{recipe} seed {seed} ({run}): rank-1 {rank1_diff:+.2f}, mAP {mAP_diff:+.2f}, ".format(**c)
          + ("inside" if c["inside_seed_spread"] else "OUTSIDE") + " the spread of its {seeds} recorded seeds".format(**c))')
cd "$repo"
{
  echo "# A fresh clone's \`make reproduce\` (benchmarks/fresh_clone.sh)"
  echo
  echo "Measured $(date -u +%F) on $(nproc) cores ($("$repo/.venv/bin/python" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())'))," \
       "commit $commit, CPU otherwise idle. Command:"
  echo
  echo "    flock /tmp/snlib-cpu.lock bash benchmarks/fresh_clone.sh"
  echo
  echo "The job (\`snlib reproduce --preset cpu --dataset synthetic --data-root data --name synthetic\`, every notebook,"
  echo "with the committed run records and an empty run cache) took **$(awk "BEGIN{printf \"%.1f\", $wall/60}") min**."
  echo
  echo "Networks retrained (the notebooks that need one) against their records:"
  echo
  echo '```'
  echo "${retrained:-(none)}"
  echo '```'
  echo
  echo "Tables and figures (.csv, .md, .png) it changed: ${tables:+**}${tables:-none}${tables:+**}."
  echo
  echo "Files it left changed or new (\`git status --short\`):"
  echo
  echo '```'
  echo "${changed:-(none)}"
  echo '```'
} > results/benchmarks/fresh_clone_cpu.md
echo "fresh clone: $wall s; tables and figures changed: ${tables:-none}; written to results/benchmarks/fresh_clone_cpu.md"
