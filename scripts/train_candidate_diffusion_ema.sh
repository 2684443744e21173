#!/usr/bin/env bash
# Second edition, candidate J (docs/experiments.md, "Candidate J"): candidate E's command (the
# shipped recipe: the diffusion faces, their processing history given to a quarter of both
# classes, the class-balanced sampler, a mirror as the only augmentation) with the weights
# averaged while fine-tuning (--ema 0.999: an exponential moving average over about the last
# thousand steps, some two and a half epochs). Validation, the best checkpoint and the model
# are the average. The split is E's (the first model's manifest from git, the same seed).
#   bash scripts/train_candidate_diffusion_ema.sh      (resumes when RUN exists)
#   bash scripts/score_candidate.sh /work/exp/candidate-j candidate-j
set -euo pipefail
AUGMENT=flip RUN=${RUN:-/work/exp/candidate-j} exec bash "$(dirname "$0")/train_candidate_diffusion_balanced.sh" --ema 0.999
