#!/usr/bin/env bash
# Second edition, candidate E (docs/experiments.md, "Candidate E"): candidate D's command (the
# diffusion faces, their processing history given to a quarter of both classes, the
# class-balanced sampler) with the control's augmentation (--augment flip) in place of robust.
# Measured on 2026-12-04: the runs trained with --augment robust (A, G-D) call 19-23% of
# UTKFace's real photos fake, the control recipe's run (C-all) 0.2%; E asks whether the
# diffusion faces can be learned without that cost. The split is D's (the first model's
# manifest from git, the same seed and fractions).
#   bash scripts/train_candidate_diffusion_flip.sh      (resumes when RUN exists; arguments are
#   added to the command: RUN=/work/exp/candidate-e-seed1 ... --seed 1 --split-seed 0 is E with
#   another seed on E's split)
#   SPLIT_FROM=... bash scripts/score_candidate.sh /work/exp/candidate-e candidate-e
set -euo pipefail
AUGMENT=flip RUN=${RUN:-/work/exp/candidate-e} exec bash "$(dirname "$0")/train_candidate_diffusion_balanced.sh" "$@"
