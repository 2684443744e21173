#!/usr/bin/env bash
# The nearest run to the paper made on these machines: the paper's pipeline (paper head, paper
# augmentation, frozen then fine-tuned backbone) with tf_efficientnet_lite0 instead of Xception,
# on the 1,247-image sample of the Kaggle 140k set, on a 2-core CPU (about 15 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/faces140k-sample}
RUN=${RUN:-runs/lite0-faces140k}

deepfake-detect train --data "$DATA" --output "$RUN" --backbone tf_efficientnet_lite0 \
    --frozen-epochs 5 --finetune-epochs 8 --batch-size 32 --workers 2 --seed 0
deepfake-detect evaluate --model "$RUN" --data "$DATA" --output "$RUN/test"
