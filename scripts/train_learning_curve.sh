#!/usr/bin/env bash
# Second edition: the learning curve extended to 1,700, 3,500 and 7,000 faces140k-like training
# images. The control recipe (scripts/train_control_three_folders.sh) with only part of
# faces140k-extra's training images (--source-train-size, half of each class, seed 0); the split,
# every validation image and every held-out image stay those of the control run, whose 7,759
# images are the curve's last point and the first model's 861 (faces140k-sample alone) its first.
#   N_EXTRA: faces140k-extra training images kept; + 861 of faces140k-sample = the curve's x.
#   bash scripts/train_learning_curve.sh            (each point resumes when its RUN exists)
#   POINTS="840" bash scripts/train_learning_curve.sh   (one point)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
ROOT=${ROOT:-/work/exp/learning-curve}
POINTS=${POINTS:-"0 840 2640 6140"}
for n in $POINTS; do
    RUN="$ROOT/extra-$n"
    RESUME=()
    [ -f "$RUN/options.json" ] && RESUME=(--resume)
    [ -f "$RUN/config.json" ] && { echo "$RUN: done"; continue; }
    deepfake-detect train --data "$DATA" --output "$RUN" "${RESUME[@]}" \
        --split-manifest src/deepfake_detect/bundled/split_manifest.csv \
        --source-train-size "faces140k-extra=$n" \
        --backbone tf_efficientnet_lite0 --image-size 256 --head paper \
        --reencode jpeg:60-95 --augment flip --balance-sources \
        --frozen-epochs 2 --finetune-epochs 6 --patience 6 --select-by loss \
        --lr 1e-3 --finetune-lr 1e-4 --batch-size 32 --workers "${WORKERS:-2}" \
        --valid-fraction 0.1 --test-fraction 0.21 --seed 0 --device auto
    for split in valid test; do
        deepfake-detect -q evaluate --model "$RUN" --data "$DATA" --split "$split" \
            --jpeg-quality 75 --output "$RUN/eval-$split-q75"
    done
done
