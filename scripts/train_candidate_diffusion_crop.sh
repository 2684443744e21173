#!/usr/bin/env bash
# Second edition, candidate F (docs/experiments.md, "Candidate F"): candidate E's command (the
# shipped recipe: the diffusion faces, their processing history given to a quarter of both
# classes, the class-balanced sampler) with --augment crop in place of flip: a mirror, and half
# of the images cropped to 50-100% of their area and resized back. E catches 59% of held-out
# fakes after an 80% crop; the robust augmentation, whose crop step this is, caught 93% but
# made real photos of other people look fake. F asks whether the crop alone does the first
# without the second. The split is E's (the first model's manifest from git, the same seed).
#   bash scripts/train_candidate_diffusion_crop.sh      (resumes when RUN exists)
#   SPLIT_FROM=... bash scripts/score_candidate.sh /work/exp/candidate-f candidate-f
set -euo pipefail
AUGMENT=crop RUN=${RUN:-/work/exp/candidate-f} exec bash "$(dirname "$0")/train_candidate_diffusion_balanced.sh"
