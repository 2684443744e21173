#!/usr/bin/env bash
# Second edition, candidate D (docs/experiments.md, "Candidate D"): candidate B's command (the
# shipped recipe, --augment robust, plus --fake-only diffusion-faces --figure-history 0.25) run
# again now that --balance-sources gives each class half of every epoch: B's seven (source,
# class) strata, four of them fake, had given it 57% fakes an epoch.
# The split is B's: the first model's manifest (as it stood before the second edition shipped,
# taken from git), the same seed and fractions, so the real photos are split as for A and the
# diffusion faces as for B. Judged against A by the rule's diffusion gate.
# AUGMENT replaces the augmentation (candidate E: scripts/train_candidate_diffusion_flip.sh);
# arguments are added to the command, and replace its options of the same name (a later option
# wins: candidate H, scripts/train_candidate_warm_restart.sh).
#   bash scripts/train_candidate_diffusion_balanced.sh      (resumes when RUN exists)
#   SPLIT_FROM=... bash scripts/score_candidate.sh /work/exp/candidate-d candidate-d
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
FAKE_ONLY=${FAKE_ONLY:-../shared/fake-only/diffusion-faces}
RUN=${RUN:-/work/exp/candidate-d}
AUGMENT=${AUGMENT:-robust}
FIRST_MANIFEST=67258d1a002b6d7caafbb5dd19f41c4a1dd9e54b:src/deepfake_detect/bundled/split_manifest.csv
MANIFEST=${RUN%/}.first-edition-manifest.csv  # beside the run folder, which train wants empty
[ -f "$MANIFEST" ] || { git show "$FIRST_MANIFEST" > "$MANIFEST.partial" && mv "$MANIFEST.partial" "$MANIFEST"; }
RESUME=()
[ -f "$RUN/options.json" ] && RESUME=(--resume)
deepfake-detect train --data "$DATA" --fake-only "$FAKE_ONLY" --output "$RUN" "${RESUME[@]}" \
    --split-manifest "$MANIFEST" \
    --backbone tf_efficientnet_lite0 --image-size 256 --head paper \
    --reencode jpeg:60-95 --augment "$AUGMENT" --figure-history 0.25 --balance-sources \
    --frozen-epochs 2 --finetune-epochs 6 --patience 6 --select-by loss \
    --lr 1e-3 --finetune-lr 1e-4 --batch-size 32 --workers 2 \
    --valid-fraction 0.1 --test-fraction 0.21 --seed 0 --device auto "$@"
