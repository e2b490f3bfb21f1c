#!/usr/bin/env bash
# The GPU check from a plain checkout, without installing the project (PYTHONPATH=the checkout):
#   bash streamer/bench/gpu_check.sh [--out DIR] [--sections a,b]
# 1. pyzmq: when it is not importable, the cp312 wheel carried in .wheels/ is unpacked into
#    .wheels/site and put on PYTHONPATH (make it beforehand, on a machine with PyPI:
#    pip download pyzmq --python-version 3.12 --only-binary=:all: --platform manylinux_2_28_x86_64 -d .wheels);
# 2. the CUDA backend's tests (ordering with stand-in slots) and the GPU check's own test;
# 3. python -m streamer.bench.gpu_check, which writes runs/gpu_check/gpu_check.json and .txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import zmq" 2>/dev/null; then
    wheel=$(ls .wheels/pyzmq-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
        echo "pyzmq is not installed and no .wheels/pyzmq-*.whl is carried: see the top of $0" >&2
        exit 2
    fi
    "$PYTHON" -m zipfile -e "$wheel" .wheels/site
    export PYTHONPATH="$PYTHONPATH:$PWD/.wheels/site"
fi
"$PYTHON" -c "import torch, zmq; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available(), 'pyzmq', zmq.__version__)"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda_backend.py tests/test_gpu_check.py
exec "$PYTHON" -m streamer.bench.gpu_check "$@"
