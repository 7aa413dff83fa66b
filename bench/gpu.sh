#!/usr/bin/env bash
# rag eval on covidqa-dev with --recipe cpt trained for a full pass, on an NVIDIA GPU, and the
# seconds per training step on the GPU and on the CPU; prints the README's covidqa-dev table.
#
#   bench/gpu.sh                    # from anywhere, after `make install` and a CUDA torch (below)
#   CPU_EVAL=1 bench/gpu.sh         # also the whole eval on the CPU (hours: a full cpt pass there)
#   DATA=... LIMIT=200 OUT=reports/gpu-covid STEPS=20 CPU_STEPS=10 bench/gpu.sh
#
# `make install` pins the CPU wheel of torch. On the GPU machine, replace it with the CUDA
# build of the same version first (pick the index URL for the driver's CUDA from
# https://pytorch.org/get-started/locally/), for example:
#   .venv/bin/pip install --force-reinstall --no-deps torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
#
# Steps, each stopping the script on failure:
#   1. the GPU is there and torch sees it (nvidia-smi, torch.cuda.is_available());
#   2. tests/integration/test_gpu.py: embedder vectors on cuda equal the CPU's, the generator
#      answers in bf16, fine-tuning trains and reloads on cuda (skipped on a machine without one);
#   3. the steps of one pass: the cpt windows of covidqa-dev's documents over the batch of 8;
#   4. RAG_DEVICE=cuda rag eval ... --recipe cpt --max-steps <one pass> --retrain -> $OUT;
#   5. seconds per cpt step on cuda and on cpu, the same windows, fine_tune's own loop;
#   6. the table, with the device and seconds per step of each fine-tuning run.
# Written without a GPU to run it on (issue 20): steps 1-3 and the table were tried on a CPU,
# steps 2, 4 and 5 on cuda were not. Read the output of step 2 before trusting the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
RAG=${RAG:-.venv/bin/rag}
DATA=${DATA:-../shared/data/covidqa-dev}
LIMIT=${LIMIT:-200}
OUT=${OUT:-reports/gpu-covid}
STEPS=${STEPS:-20}          # timed GPU steps (after 2 of warm-up)
CPU_STEPS=${CPU_STEPS:-10}  # timed CPU steps: about 7 s each on 2 cores, 160 tokens x 8
MAX_MINUTES=${MAX_MINUTES:-240}  # each run's time budget: the step budget (one pass) decides

say() { printf '\n== %s\n' "$*" >&2; }

say "1/6 the GPU"
command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: this script needs an NVIDIA GPU" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[ -d "$DATA" ] || { echo "no dataset at $DATA (set DATA=...)" >&2; exit 2; }
"$PY" - <<'PY' || exit 2
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA GPU (built for CUDA {torch.version.cuda}): "
             "install the CUDA build of torch (see the top of bench/gpu.sh)")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"bf16 {'yes' if torch.cuda.is_bf16_supported(including_emulation=False) else 'no (float32)'}")
PY

say "2/6 the GPU path's tests"
"$PY" -m pytest -q tests/integration/test_gpu.py -p no:cacheprovider

say "3/6 the steps of one pass"
PASS=$("$PY" -m bench.gpu pass-steps --data "$DATA")
echo "$PASS"
PASS_STEPS=$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["steps"])' "$PASS")

evaluate() {  # device, out folder
  say "rag eval on $1 -> $2 (cpt: $PASS_STEPS steps, every run's step budget)"
  mkdir -p "$2"
  local start=$SECONDS
  RAG_DEVICE=$1 "$RAG" eval --data "$DATA" --limit "$LIMIT" --recipe cpt --retrain \
    --max-steps "$PASS_STEPS" --max-minutes "$MAX_MINUTES" --out "$2"
  echo "$1: $((SECONDS - start)) s wall" | tee "$2/wall.txt"
}

say "4/6 rag eval on the GPU"
evaluate cuda "$OUT"
if [ -n "${CPU_EVAL:-}" ]; then evaluate cpu "$OUT-cpu"; fi

say "5/6 seconds per step, cuda then cpu"
rm -f "$OUT/step-seconds.json"
"$PY" -m bench.gpu step-seconds --data "$DATA" --device cuda --steps "$STEPS" --append "$OUT/step-seconds.json"
"$PY" -m bench.gpu step-seconds --data "$DATA" --device cpu --steps "$CPU_STEPS" --append "$OUT/step-seconds.json"

say "6/6 the table"
"$PY" -m bench.gpu table "$OUT" ${CPU_EVAL:+"$OUT-cpu"} | tee "$OUT/table.md"
