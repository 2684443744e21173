#!/usr/bin/env bash
# Second edition, candidate I (docs/experiments.md, "Candidate I"): candidate E's command (the
# shipped recipe: the diffusion faces, their processing history given to a quarter of both
# classes, the class-balanced sampler) with --augment rescale in place of flip: a mirror, and
# half of the images resized down to 0.4-1 of the input and back up. E catches 77% of
# validation fakes after a resize to 128 px; candidate F showed that the crop step of the
# robust augmentation, not necessarily its rescaling, made real photos of other people look
# fake. I asks whether the rescaling alone buys resized fakes without new false alarms. The
# split is E's (the first model's manifest from git, the same seed).
#   bash scripts/train_candidate_diffusion_rescale.sh      (resumes when RUN exists)
#   bash scripts/score_candidate.sh /work/exp/candidate-i candidate-i
set -euo pipefail
AUGMENT=rescale RUN=${RUN:-/work/exp/candidate-i} exec bash "$(dirname "$0")/train_candidate_diffusion_balanced.sh"
