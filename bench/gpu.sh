#!/usr/bin/env bash
# npgen's CUDA backend on one GPU, in one go and in under 8 minutes on an H200: the CUDA tests
# on the device, then bench/gpu.py's timings and its table (bench/results/gpu/gpu.md, gpu.json).
# Needs numba-cuda, CuPy and (for the PyTorch row) torch installed; fetches nothing. The
# package runs from a copy of the source tree, so nothing needs installing.
#   usage: bench/gpu.sh [OUT_DIR]        (default bench/results/gpu)
#          bench/gpu.sh --dry-run OUT    (tiny sizes under the simulator: checks the script)
set -euo pipefail
cd "$(dirname "$0")/.."
dry=()
if [[ "${1:-}" == "--dry-run" ]]; then
    dry=(--dry-run)
    shift
    export NUMBA_ENABLE_CUDASIM=1
else
    export NUMBA_ENABLE_CUDASIM=0 NPGEN_CUDA_DEVICE=1
fi
out=${1:-bench/results/gpu}
mkdir -p "$out"
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
cp -a npgen "$tree/npgen"
cp -a kernels "$tree/npgen/kernels"
export PYTHONPATH="$tree"
python -c "import numba_cuda, numba, numpy; print('numba-cuda', numba_cuda.__version__, 'numba', numba.__version__, 'numpy', numpy.__version__)" | tee "$out/versions.txt"
if [[ ${#dry[@]} -eq 0 ]]; then
    python -c "import cupy; print('cupy', cupy.__version__)" | tee -a "$out/versions.txt"
    timeout 200 python -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py \
        tests/test_cuda_replicas.py 2>&1 | tee "$out/device_tests.txt"
fi
timeout 300 python bench/gpu.py --out "$out" --budget 200 "${dry[@]}"
