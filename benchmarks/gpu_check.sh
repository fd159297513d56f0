#!/usr/bin/env bash
# The CUDA checks in one go, for a machine with an NVIDIA GPU (about 8 minutes): the CUDA
# tests, then benchmarks/mcmc.py with --device cuda (the chains sweep, then 64 chains, one
# repeat). Reports and logs go to $OUT (default: benchmarks/results/cuda). Wheels of missing
# peers (e.g. blackjax) may be put in .whl/ beforehand where the machine has no registry.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PYTHON:-python3}
if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}
{ date; nvidia-smi -L; nproc; uptime
  $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } \
    2>&1 | tee "$OUT/info.log"
t0=$(date +%s)
timeout 150 $PY -m pytest -q -rs -p no:cacheprovider tests/mcmc/test_cuda.py \
    tests/diffusion/test_sample_device.py tests/cli/test_data_and_device_options.py -k cuda \
    2>&1 | tee "$OUT/tests.log" | tail -25
echo "tests: $(( $(date +%s) - t0 )) s"
timeout 150 $PY benchmarks/mcmc.py --device cuda --samplers mala --only banana,gauss100-100 \
    --no-main --out "$OUT/mcmc_cuda_sweep.md" --note "chains sweep on the GPU" 2>&1 \
    | grep -v "^wrote" | tee "$OUT/sweep.log"
echo "sweep: $(( $(date +%s) - t0 )) s"
timeout 170 $PY benchmarks/mcmc.py --device cuda --samplers mala,hmc --repeat 1 --no-sweep \
    --skip "scorelab eager per-chain" --only banana,gauss100-1000-rot,funnel,far-modes,gauss100-100 \
    --out "$OUT/mcmc_cuda.md" --note "64 chains on the GPU, one repeat" 2>&1 \
    | grep -v "^wrote" | tee "$OUT/main.log"
echo "all: $(( $(date +%s) - t0 )) s"
