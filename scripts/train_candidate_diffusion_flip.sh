#!/usr/bin/env bash
# Second edition, candidate E (docs/experiments.md, "Candidate E"): candidate D's command (the
# diffusion faces, their processing history given to a quarter of both classes, the
# class-balanced sampler) with the control's augmentation (--augment flip) in place of robust.
# Measured on 2026-12-04: the runs trained with --augment robust (A, G-D) call 19-23% of
# UTKFace's real photos fake, the control recipe's run (C-all) 0.2%; E asks whether the
# diffusion faces can be learned without that cost. The split is D's (the first model's
# manifest from git, the same seed and fractions).
#   bash scripts/train_candidate_diffusion_flip.sh      (resumes when RUN exists)
#   SPLIT_FROM=... bash scripts/score_candidate.sh /work/exp/candidate-e candidate-e
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
FAKE_ONLY=${FAKE_ONLY:-../shared/fake-only/diffusion-faces}
RUN=${RUN:-/work/exp/candidate-e}
FIRST_MANIFEST=67258d1a002b6d7caafbb5dd19f41c4a1dd9e54b:src/deepfake_detect/bundled/split_manifest.csv
MANIFEST=${RUN%/}.first-edition-manifest.csv  # beside the run folder, which train wants empty
[ -f "$MANIFEST" ] || { git show "$FIRST_MANIFEST" > "$MANIFEST.partial" && mv "$MANIFEST.partial" "$MANIFEST"; }
RESUME=()
[ -f "$RUN/options.json" ] && RESUME=(--resume)
deepfake-detect train --data "$DATA" --fake-only "$FAKE_ONLY" --output "$RUN" "${RESUME[@]}" \
    --split-manifest "$MANIFEST" \
    --backbone tf_efficientnet_lite0 --image-size 256 --head paper \
    --reencode jpeg:60-95 --augment flip --figure-history 0.25 --balance-sources \
    --frozen-epochs 2 --finetune-epochs 6 --patience 6 --select-by loss \
    --lr 1e-3 --finetune-lr 1e-4 --batch-size 32 --workers 2 \
    --valid-fraction 0.1 --test-fraction 0.21 --seed 0 --device auto
