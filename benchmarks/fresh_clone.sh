#!/bin/bash
# What a new user's `make reproduce` does on this machine: a fresh clone of HEAD (its committed run records, an
# empty run cache) runs make reproduce's job; its wall time and what it leaves changed (`git status`) are written to
# results/benchmarks/fresh_clone_cpu.md. The environment is this checkout's .venv (creating one is not timed).
# With --no-records the clone's `cpu` run records are deleted first, so that the job trains the whole protocol (issue
# "The verdicts at convergence": within 60 minutes?); written to results/benchmarks/fresh_clone_no_records_cpu.md
# with each notebook's time and, for every run it recorded, whether its metrics equal the committed record's (training
# is deterministic on one machine: equal where the committed record was made on a processor like this one).
# Usage, from the repository root with the CPU otherwise idle:
#     flock /tmp/snlib-cpu.lock bash benchmarks/fresh_clone.sh [--no-records]
set -euo pipefail
no_records=false
case "${1:-}" in
  --no-records) no_records=true ;;
  "") ;;
  *) echo "usage: bash benchmarks/fresh_clone.sh [--no-records]" >&2; exit 2 ;;
esac
repo=$(pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
git clone -q "$repo" "$scratch/snlib"
commit=$(git -C "$scratch/snlib" rev-parse --short HEAD)
cd "$scratch/snlib"
if $no_records; then
  rm -f results/runs/cpu/*.json
  out=results/benchmarks/fresh_clone_no_records_cpu.md
  what="with no run records (the clone's \`results/runs/cpu/\` emptied) and an empty run cache"
  command="flock /tmp/snlib-cpu.lock bash benchmarks/fresh_clone.sh --no-records"
else
  out=results/benchmarks/fresh_clone_cpu.md
  what="with the committed run records and an empty run cache"
  command="flock /tmp/snlib-cpu.lock bash benchmarks/fresh_clone.sh"
fi
start=$(date +%s)
PYTHONPATH="$PWD" SNLIB_CACHE="$scratch/cache" "$repo/.venv/bin/python" -m snlib reproduce --preset cpu --dataset synthetic \
    --data-root data --name synthetic > "$scratch/log.txt" 2>&1 || { tail -20 "$scratch/log.txt"; exit 1; }
wall=$(( $(date +%s) - start ))
changed=$(git status --short -- . ':!results/runs')
tables=$(echo "$changed" | grep -E '\.(csv|md|png)$' || true)   # what must come back byte for byte
retrained=$("$repo/.venv/bin/python" -c '
import json
for c in json.load(open("results/cpu/synthetic/manifest.json")).get("retrained_runs", {}).values():
    print("{recipe} seed {seed} ({run}): rank-1 {rank1_diff:+.2f}, mAP {mAP_diff:+.2f}, ".format(**c)
          + ("inside" if c["inside_seed_spread"] else "OUTSIDE") + " the spread of its {seeds} recorded seeds".format(**c))')
notebooks=$(grep -E '^\[reproduce\] .*(: ok in|done in)' results/cpu/synthetic/reproduce_log.txt | tail -15 || true)
records=""
if $no_records; then   # each run recorded here against the committed record of the same configuration
  records=$("$repo/.venv/bin/python" - "$repo/results/runs/cpu" <<'EOF'
import json, sys
from pathlib import Path
committed, equal, differ, new, seconds = Path(sys.argv[1]), 0, [], 0, 0.0
for path in sorted(Path("results/runs/cpu").glob("*.json")):
    mine = json.loads(path.read_text())
    seconds += mine["wall_time_s"]
    theirs = committed / path.name
    if not theirs.is_file():
        new += 1
    elif json.loads(theirs.read_text())["metrics"] == mine["metrics"]:
        equal += 1
    else:
        differ.append(path.stem)
listed = f" ({' '.join(differ)})" if differ else ""
print(f"{equal + len(differ) + new} runs recorded ({seconds / 60:.1f} min of training in their records); "
      f"metrics equal to the committed record's: {equal}; different: {len(differ)}{listed}; "
      f"no committed record of that configuration: {new}")
EOF
)
fi
cd "$repo"
{
  echo "# A fresh clone's \`make reproduce\` (benchmarks/fresh_clone.sh)"
  echo
  echo "Measured $(date -u +%F) on $(nproc) cores ($("$repo/.venv/bin/python" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())'))," \
       "commit $commit, CPU otherwise idle. Command:"
  echo
  echo "    $command"
  echo
  echo "The job (\`snlib reproduce --preset cpu --dataset synthetic --data-root data --name synthetic\`, every notebook,"
  echo "$what) took **$(awk "BEGIN{printf \"%.1f\", $wall/60}") min**."
  if $no_records; then
    echo
    echo "Per notebook (the clone's \`reproduce_log.txt\`):"
    echo
    echo '```'
    echo "$notebooks"
    echo '```'
    echo
    echo "Runs: $records."
  fi
  echo
  echo "Networks retrained (the notebooks that need one) against their records:"
  echo
  echo '```'
  echo "${retrained:-(none)}"
  echo '```'
  echo
  echo "Tables and figures (.csv, .md, .png) it changed: ${tables:+**}${tables:-none}${tables:+**}."
  echo
  echo "Files it left changed or new, run records aside (\`git status --short\`):"
  echo
  echo '```'
  echo "${changed:-(none)}"
  echo '```'
} > "$out"
echo "fresh clone: $wall s; tables and figures changed: ${tables:-none}; written to $out"
