#!/usr/bin/env bash
# Second edition, candidate H (docs/experiments.md, "Candidate H"): the shipped model E trained
# on from its own weights (--init-from) for one more short cosine schedule of fine-tuning, at
# half E's fine-tuning rate, with E's data, split and recipe: E's command
# (scripts/train_candidate_diffusion_flip.sh) with the options below in place of its own.
# E's validation loss was lowest at the last epoch of its schedule, so its training may have
# stopped while it still learnt. The split is E's (the first model's manifest from git, split
# seed 0, E's fractions); --seed 1 draws new epochs (shuffling, mirroring, which images get the
# diffusion faces' history) rather than replaying E's first ones.
# Judged on 2026-12-06 (docs/experiments.md): it failed the rule's purpose (paired validation
# ROC-AUC H minus E -0.0004 [-0.0022, +0.0013]); E stays the bundled model.
# INIT names the model to start from: the bundled model E by default, or E re-created by
# scripts/train_default_model.sh's training step.
#   bash scripts/train_candidate_warm_restart.sh      (resumes when RUN exists)
#   bash scripts/score_candidate.sh /work/exp/candidate-h candidate-h
set -euo pipefail
INIT=${INIT:-src/deepfake_detect/bundled}  # relative to the repository root
AUGMENT=flip RUN=${RUN:-/work/exp/candidate-h} exec bash "$(dirname "$0")/train_candidate_diffusion_balanced.sh" \
    --init-from "$INIT" --frozen-epochs 0 --finetune-epochs 3 --patience 3 --finetune-lr 5e-5 \
    --split-seed 0 --seed 1
