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
RUN=${RUN:-/work/exp/candidate-robust} AUGMENT=robust exec bash scripts/train_control_three_folders.sh
