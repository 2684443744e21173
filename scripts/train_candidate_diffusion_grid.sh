#!/usr/bin/env bash
# Second edition, candidate M (docs/experiments.md, "Candidate M"): E's command (the diffusion
# faces, their history given to a quarter of both classes, --augment flip, E's split and seed)
# with half of the training re-encodes saved off the image's 8x8 block grid (--grid-shift 0.5),
# as a face cut out of a larger photo is saved. scripts/grid_oracle.py measured on 2026-12-07
# that E calls 25% of real validation faces fake when their last save is 3 and 5 px off the
# grid (8% on it), with no pixel resampled: every training image of E was saved on its grid.
#   bash scripts/train_candidate_diffusion_grid.sh      (resumes when RUN exists)
set -euo pipefail
AUGMENT=flip RUN=${RUN:-/work/exp/candidate-m} exec bash "$(dirname "$0")/train_candidate_diffusion_balanced.sh" \
    --grid-shift 0.5 "$@"
