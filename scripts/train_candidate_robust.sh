#!/usr/bin/env bash
# Second edition, candidate A: the control recipe (scripts/train_control_three_folders.sh) plus
# --augment robust alone (small rotation, crop that keeps the face, resize down and back, mild
# blur, JPEG 30-95). Candidate B (robust + diffusion faces) failed the clean rule on one source
# (docs/experiments.md, "Candidate B"), so the rule's amendment separates the two changes: this
# run says what the robust augmentation costs or gains on its own; the diffusion faces are then
# added on top of whichever of the control and A wins.
#   bash scripts/train_candidate_robust.sh      (resumes when RUN exists)
#   bash scripts/score_candidate.sh /work/exp/candidate-robust candidate-a
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
RUN=${RUN:-/work/exp/candidate-robust}
RESUME=()
[ -f "$RUN/options.json" ] && RESUME=(--resume)
deepfake-detect train --data "$DATA" --output "$RUN" "${RESUME[@]}" \
    --split-manifest src/deepfake_detect/bundled/split_manifest.csv \
    --backbone tf_efficientnet_lite0 --image-size 256 --head paper \
    --reencode jpeg:60-95 --augment robust --balance-sources \
    --frozen-epochs 2 --finetune-epochs 6 --patience 6 --select-by loss \
    --lr 1e-3 --finetune-lr 1e-4 --batch-size 32 --workers 2 \
    --valid-fraction 0.1 --test-fraction 0.21 --seed 0 --device auto
