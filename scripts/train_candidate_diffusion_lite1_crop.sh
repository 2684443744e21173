#!/usr/bin/env bash
# Second edition, candidate L (docs/experiments.md, "Candidate L"): candidate K's command (E's
# recipe on tf_efficientnet_lite1: the diffusion faces, their processing history given to a
# quarter of both classes, the class-balanced sampler) with --augment crop in place of flip: a
# mirror, and half of the images cropped to 50-100% of their area and resized back. On Lite0
# the crop (candidate F) caught 92% of fakes after an 80% crop, and made real photos unlike
# FFHQ's look fake; Lite1 called a quarter as many of those fake as Lite0 did. L asks whether
# Lite1 keeps that with the crop. E's split and seed.
#   bash scripts/train_candidate_diffusion_lite1_crop.sh      (resumes when RUN exists)
#   SPLIT_FROM=... bash scripts/score_candidate.sh /work/exp/candidate-l candidate-l
set -euo pipefail
AUGMENT=crop RUN=${RUN:-/work/exp/candidate-l} exec bash "$(dirname "$0")/train_candidate_diffusion_balanced.sh" \
    --backbone tf_efficientnet_lite1 "$@"
