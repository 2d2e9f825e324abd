#!/usr/bin/env bash
# Every speed figure of issue 13 in one go on a GPU machine that has torch but not av, faiss, duckdb
# or open_clip, and no network.  Two steps, on the same warm machine:
#
#   benchmarks/gpu_check.sh install WHEELDIR   # pip-installs WHEELDIR/*.whl (no index, no deps) into $DEPS;
#                                              # run it once per folder of wheels (a call carries <= 64 MiB)
#   benchmarks/gpu_check.sh run                # the figures, into benchmarks/results/*-gpu.*
#
# Wheels to hand it (cp312, manylinux x86_64): av, faiss-cpu, duckdb, open_clip_torch, ftfy, wcwidth,
# regex, timm (open_clip imports it), nvidia-ml-py (energy), rich, pyarrow (bundles), plus whatever
# `pip download --no-deps` lists as missing on a first try.  Figures are written as each finishes, so a
# run cut short keeps what it measured.  Try it on a CPU first with small sizes:
#
#   SMALL=1 benchmarks/gpu_check.sh run
#
# About 8 minutes on an H100/H200; each step prints its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=${DEPS:-/tmp/flashback-deps}
RESULTS=${RESULTS:-benchmarks/results}

case "${1:-run}" in
install)
  mkdir -p "$DEPS"
  python -m pip install --quiet --no-index --no-deps --upgrade --target "$DEPS" "$2"/*.whl
  echo "installed $(ls "$2"/*.whl | wc -l) wheel(s) into $DEPS"
  exit 0 ;;
run) ;;
*) echo "usage: $0 install WHEELDIR | run" >&2; exit 2 ;;
esac

export PYTHONPATH="$DEPS:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 FLASHBACK_CACHE_DIR=${FLASHBACK_CACHE_DIR:-/tmp/flashback-cache} FLASHBACK_LOG_EVERY_S=20
mkdir -p "$RESULTS"
CORES=$(nproc)
if [[ -n "${SMALL:-}" ]]; then  # a CPU trial: every step, tiny sizes
  MODEL=tiny; DEVICE=auto; BENCH=(--model fb-bench-tiny --seconds 2 --size 64x48 --feeds 2 --search-sizes 1000)
  ARCHIVE=(--files 4 --seconds 4 --long-minutes 3 --size 160x120 --workers 1,2); FEEDS=(--feeds 2,4 --seconds 4 --size 160x120)
  SIZE=3000; RESULTS=$(mktemp -d); echo "SMALL: results go to $RESULTS"
  cfg=$(mktemp -d); printf '%s' '{"embed_dim": 64, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}' > "$cfg/fb-bench-tiny.json"
  export FLASHBACK_MODEL_CONFIGS=$cfg
  ENCODER=fb-bench-tiny
else
  MODEL=ViT-B-32; DEVICE=cuda; ENCODER=ViT-B-32
  BENCH=(--model ViT-B-32 --seconds 20 --size 640x480 --feeds 8 --search-sizes 100000,1000000)
  ARCHIVE=(--files 32 --seconds 30 --long-minutes 60 --size 640x480 --workers "$((CORES - 1))")
  FEEDS=(--feeds 64,128,256 --seconds 15 --size 640x480)
  SIZE=1000000
fi

TAG=$([[ $DEVICE == cuda ]] && echo gpu || echo cpu)
step() { local name=$1; shift; local t0=$SECONDS; echo "== $name"; "$@"; echo "== $name: $((SECONDS - t0)) s"; }

python - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

# 1. one file per preset, encoder batches, search to 1M (FAISS and the GPU's matrix product), efficiency and energy
step bench python -m flashback.cli bench "${BENCH[@]}" --device "$DEVICE" --out "$RESULTS"
# 2. a folder and one long file: one process against --workers N (the default on CUDA), scores compared
step archive python benchmarks/archive.py --model "$MODEL" --device "$DEVICE" "${ARCHIVE[@]}" --out "$RESULTS/archive-$TAG.json"
# 3. live feeds at p95 <= 1 s
step live-feeds python benchmarks/live_feeds.py --model "$ENCODER" --preset fast --device "$DEVICE" "${FEEDS[@]}" \
  --out "$RESULTS/live-feeds-$TAG.json"
# 4. a memory of SIZE captions, end to end, index included (the offline grammar; near-duplicates off: the
#    MiniLM wheel is not carried), and what it delivered against what was asked
out=$(mktemp -d)/memory
t0=$(date +%s.%N)
step memory-build python -m flashback.cli memory build --out "$out" --size "$SIZE" --near-dup-threshold 0 \
  --encoder "$ENCODER" --pretrained random --device "$DEVICE"
python - "$out" "$t0" "$SIZE" "$RESULTS" "$TAG" <<'EOF'
import json, sys, time
from pathlib import Path
out, t0, size, results, tag = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
m = json.loads((out / "manifest.json").read_text())
b = m["build"]
doc = {"size_requested": size, "wall_s": round(time.time() - t0, 1), "counts": m["counts"], "rounds": b.get("rounds"),
       "generated": b.get("generated"), "exact_duplicates": b.get("exact_duplicates"), "index": b.get("index"),
       "short_reason": b.get("short_reason")}
(results / f"memory-build-{tag}.json").write_text(json.dumps(doc, indent=1) + "\n")
print(json.dumps(doc))
EOF
echo "figures in $RESULTS"
