#!/usr/bin/env bash
# Second edition, candidate H (docs/experiments.md, "Candidate H"): the shipped model E trained
# on from its own weights (--init-from) for one more short cosine schedule of fine-tuning, at
# half E's fine-tuning rate, with E's data, split and recipe. E's validation loss was lowest at
# the last epoch of its schedule, so its training may have stopped while it still learnt.
# The split is E's: the first model's manifest from git (scripts/train_candidate_diffusion_balanced.sh
# takes it the same way), split seed 0 and E's fractions; --seed 1 draws new epochs (shuffling,
# mirroring, which images get the diffusion faces' history) rather than replaying E's first ones.
# Judged on 2026-12-06 (docs/experiments.md): it failed the rule's purpose (paired validation
# ROC-AUC H minus E -0.0004 [-0.0022, +0.0013]); E stays the bundled model.
# INIT names the model to start from: the bundled model E by default, or E re-created by
# scripts/train_default_model.sh's training step.
#   bash scripts/train_candidate_warm_restart.sh      (resumes when RUN exists)
#   bash scripts/score_candidate.sh /work/exp/candidate-h candidate-h
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
FAKE_ONLY=${FAKE_ONLY:-../shared/fake-only/diffusion-faces}
RUN=${RUN:-/work/exp/candidate-h}
INIT=${INIT:-src/deepfake_detect/bundled}
FIRST_MANIFEST=67258d1a002b6d7caafbb5dd19f41c4a1dd9e54b:src/deepfake_detect/bundled/split_manifest.csv
MANIFEST=${RUN%/}.first-edition-manifest.csv  # beside the run folder, which train wants empty
[ -f "$MANIFEST" ] || { git show "$FIRST_MANIFEST" > "$MANIFEST.partial" && mv "$MANIFEST.partial" "$MANIFEST"; }
RESUME=()
[ -f "$RUN/options.json" ] && RESUME=(--resume)
deepfake-detect train --data "$DATA" --fake-only "$FAKE_ONLY" --output "$RUN" "${RESUME[@]}" \
    --split-manifest "$MANIFEST" --init-from "$INIT" \
    --backbone tf_efficientnet_lite0 --image-size 256 --head paper \
    --reencode jpeg:60-95 --augment flip --figure-history 0.25 --balance-sources \
    --frozen-epochs 0 --finetune-epochs 3 --patience 3 --select-by loss \
    --finetune-lr 5e-5 --batch-size 32 --workers 2 \
    --valid-fraction 0.1 --test-fraction 0.21 --split-seed 0 --seed 1 --device auto
