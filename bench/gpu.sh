#!/usr/bin/env bash
# npgen's CUDA backend on one GPU, in one go and in under 8 minutes on an H200: bench/gpu.py's
# timings first (each row lands in bench/results/gpu/gpu.json as soon as it is measured), then
# the CUDA tests on the device; a failing test never costs a row. Needs numba-cuda, CuPy and
# (for the PyTorch row) torch; neither POT, distributed nor mlxtend. Fetches nothing: the
# package runs from a copy of the source tree, so nothing needs installing.
#   usage: bench/gpu.sh [OUT_DIR]        (default bench/results/gpu)
#          bench/gpu.sh --dry-run OUT    (tiny sizes under the simulator: checks the script;
#                                         the device tests are only collected)
# Exits 0 when the rows and the tests all passed, else the last failing step's status.
set -uo pipefail
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
mkdir -p "$out" || exit 1
tree=$(mktemp -d) || exit 1
trap 'rm -rf "$tree"' EXIT
cp -a npgen "$tree/npgen" && cp -a kernels "$tree/npgen/kernels" || exit 1
export PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}"
status=0
python3 -c "import numba_cuda, numba, numpy; print('numba-cuda', numba_cuda.__version__, 'numba', numba.__version__, 'numpy', numpy.__version__)" | tee "$out/versions.txt" || status=$?
if [[ ${#dry[@]} -eq 0 ]]; then
    python3 -c "import cupy; print('cupy', cupy.__version__)" | tee -a "$out/versions.txt" || status=$?
fi
timeout 300 python3 bench/gpu.py --out "$out" --budget 200 "${dry[@]}" || status=$?
tests=(tests/test_cuda_kernels.py tests/test_cuda_replicas.py tests/test_cuda_sampler.py)
if [[ ${#dry[@]} -eq 0 ]]; then
    timeout 200 python3 -m pytest -q -p no:cacheprovider "${tests[@]}" 2>&1 | tee "$out/device_tests.txt" || status=$?
else
    python3 -m pytest -q -p no:cacheprovider --collect-only "${tests[@]}" 2>&1 | tail -1 | tee "$out/device_tests.txt" || status=$?
fi
exit "$status"
