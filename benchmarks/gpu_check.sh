#!/usr/bin/env bash
# The checks of a GPU machine in one command (at most ~9.5 minutes): CUDA tests, bench_loss.py --device cuda, the
# paper preset's training step in fp32 / bf16 / fp16 and both layouts at P=32 x K=4, one paper epoch on the
# synthetic set (pretrained=false), one paper epoch on a Market-size synthetic set in Market-1501 layout (decoded
# cache, 16 workers) and the projected time of make reproduce PRESET=paper from snlib reproduce --plan.
# Details: benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [FOLDER]         # writes FOLDER (else $OUT, else .)/gpu_check.{json,md}
#   bash benchmarks/gpu_check.sh --dry-run /tmp/gpu-check-dry     # on the CPU: every step at tiny sizes
#
# snlib runs from this source tree (PYTHONPATH=.) with the machine's python: this checkout's .venv when there is
# one, else python3 (set PYTHON to choose another).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=$(command -v python3 || command -v python)
fi
folder=0 previous=
for arg in "$@"; do
  case $arg in -*) ;; *) [ "$previous" = --budget-s ] || folder=1 ;; esac
  previous=$arg
done
[ $folder = 1 ] || set -- "$@" "${OUT:-.}"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} MPLBACKEND=Agg
exec "$PY" benchmarks/gpu_check.py "$@"
