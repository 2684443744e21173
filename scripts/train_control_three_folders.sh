#!/usr/bin/env bash
# Second edition, control run: the first bundled model's recipe (S2) unchanged but for a shorter
# fine-tuning budget, on all three folders of ../shared/data. The first model's split manifest
# keeps its held-out images held out; faces140k-extra is split around them (21% held out).
# It answers one question before any recipe change: does the extra faces140k-like data alone
# move validation ROC-AUC as the learning curve predicted?
#   bash scripts/train_control_three_folders.sh          (resumes when RUN exists)
# AUGMENT=robust changes only the augmentation (candidate A, scripts/train_candidate_robust.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
RUN=${RUN:-/work/exp/control-three-folders}
RESUME=()
[ -f "$RUN/options.json" ] && RESUME=(--resume)
deepfake-detect train --data "$DATA" --output "$RUN" "${RESUME[@]}" \
    --split-manifest src/deepfake_detect/bundled/split_manifest.csv \
    --backbone tf_efficientnet_lite0 --image-size 256 --head paper \
    --reencode jpeg:60-95 --augment "${AUGMENT:-flip}" --balance-sources \
    --frozen-epochs 2 --finetune-epochs 6 --patience 6 --select-by loss \
    --lr 1e-3 --finetune-lr 1e-4 --batch-size 32 --workers 2 \
    --valid-fraction 0.1 --test-fraction 0.21 --seed 0 --device auto
