#!/usr/bin/env bash
# Second edition, candidate B: the control recipe (scripts/train_control_three_folders.sh) plus
# the two changes the issue asks for, in one run (two CPU cores allow about one run per session):
#   --augment robust              what a shared photo goes through (small rotation, crop that keeps
#                                 the face, resize down and back, mild blur, JPEG 30-95)
#   --fake-only diffusion-faces   SDXL / FLUX.1 faces as a fourth source, split by image
#   --figure-history 0.25         a quarter of every source's training images (real and fake alike)
#                                 get the diffusion folder's processing history, so it tells no class
# Judged against the control by the rule in docs/experiments.md.
#   bash scripts/train_candidate_robust_diffusion.sh      (resumes when RUN exists)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
FAKE_ONLY=${FAKE_ONLY:-../shared/fake-only/diffusion-faces}
RUN=${RUN:-/work/exp/candidate-robust-diffusion}
RESUME=()
[ -f "$RUN/options.json" ] && RESUME=(--resume)
deepfake-detect train --data "$DATA" --fake-only "$FAKE_ONLY" --output "$RUN" "${RESUME[@]}" \
    --split-manifest src/deepfake_detect/bundled/split_manifest.csv \
    --backbone tf_efficientnet_lite0 --image-size 256 --head paper \
    --reencode jpeg:60-95 --augment robust --figure-history 0.25 --balance-sources \
    --frozen-epochs 2 --finetune-epochs 6 --patience 6 --select-by loss \
    --lr 1e-3 --finetune-lr 1e-4 --batch-size 32 --workers 2 \
    --valid-fraction 0.1 --test-fraction 0.21 --seed 0 --device auto
