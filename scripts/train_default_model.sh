#!/usr/bin/env bash
# Re-create the bundled model, second edition, from scratch with the project's own commands, and
# make it the package's bundled model (weights, config, split manifest, card, int8 ONNX file):
#   bash scripts/train_default_model.sh     (rerun the same command to resume a stopped run)
# The first model's recipe is scripts/train_first_edition.sh.
# The recipe is the one docs/experiments.md chose on validation ("Second edition"): the first
# model's (tf_efficientnet_lite0 at 256 px, ImageNet weights, paper head, every image re-encoded
# as JPEG 60-95 so headshots-sg2's PNG reals carry no label, sources and classes balanced per
# epoch, 2 frozen and 6 fine-tuning epochs, best epoch by validation loss) on all three folders of
# ../shared/data, with RECIPE_CHANGES below. The first model's split manifest keeps its
# held-out images held out; the other images are split around them (21% held out).
# With RUN naming a finished run (its config.json exists) training is skipped and that run is
# measured and shipped as it is (docs/experiments.md, fourth amendment).
# Then, once, for this model only: the held-out split at JPEG quality 75, real photos of other
# people and cameras (../shared/probes/utkface-real, never a training source), the held-out
# diffusion faces, and the everyday changes beside the first model.
# The shipped model came from it on 2026-12-04 with RUN=<candidate E's finished run> (training
# skipped; that run is scripts/train_candidate_diffusion_flip.sh, whose command this one repeats
# with the shipped split manifest, which holds E's split). On a 2-core CPU: about 1 h 45 min of
# training (channels-last; E's run took 1 h 44 min, a CI run beside it for a while), then about
# 15 minutes of measuring and 30 of training and measuring the int8 file (added 2026-12-08).
# On 2026-12-07 its threshold was chosen again by the trainer's new default rule (--threshold-rule recalibrated) on E's own validation pass, and the model
# measured and shipped again the same way, with RUN naming that refit (scripts/validation_loss.py
# --calibrate --output; docs/experiments.md, "A steadier threshold rule"). E's recipe has not run on a GPU yet (the next GPU round trains it);
# the second edition's first release (candidate A) took about 5.5 minutes on an NVIDIA H200.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
FAKE_ONLY=${FAKE_ONLY:-../shared/fake-only/diffusion-faces}
PROBES=${PROBES:-../shared/probes/utkface-real}
RUN=${RUN:-/work/exp/bundled-second-edition}
FIRST_EDITION=255aebb  # the commit that shipped the first model (2026-11-26)
# A run trained without diffusion faces has none held out: measure it on those of a diffusion
# candidate's split (docs/experiments.md, fourth amendment), which it has never seen.
DIFFUSION_SPLIT_FROM=${DIFFUSION_SPLIT_FROM:-$RUN}
# The changes to the first recipe that the rule keeps (docs/experiments.md, "Candidate E" and
# its judgement): the diffusion faces of ../shared/fake-only, their processing history given to
# a quarter of the images of both classes, the sampler giving each class half of every epoch.
# The augmentation stays the first recipe's mirroring: the robust augmentation (candidate A,
# the second edition's first release) made the model call 22.5% of UTKFace's real photos fake.
RECIPE_CHANGES=(--fake-only "$FAKE_ONLY" --figure-history 0.25 --augment flip)
if [ ! -f "$RUN/config.json" ]; then
    RESUME=()
    [ -f "$RUN/options.json" ] && RESUME=(--resume)
    deepfake-detect train --data "$DATA" --output "$RUN" "${RESUME[@]}" "${RECIPE_CHANGES[@]}" \
        --split-manifest src/deepfake_detect/bundled/split_manifest.csv \
        --backbone tf_efficientnet_lite0 --image-size 256 --head paper \
        --reencode jpeg:60-95 --balance-sources \
        --frozen-epochs 2 --finetune-epochs 6 --patience 6 --select-by loss \
        --lr 1e-3 --finetune-lr 1e-4 --batch-size 32 --workers 2 \
        --valid-fraction 0.1 --test-fraction 0.21 --seed 0 --device auto
fi
M="$RUN/measured"
mkdir -p "$M"
deepfake-detect -q evaluate --model "$RUN" --data "$DATA" --split test --jpeg-quality 75 \
    --output "$M/heldout"
deepfake-detect -q evaluate --model "$RUN" --data "$PROBES" --label real --output "$M/utkface"
python scripts/diffusion_report.py --model "$RUN" --split-from "$DIFFUSION_SPLIT_FROM" --split test \
    --json "$M/diffusion-heldout.json"
# The everyday changes beside the first model (taken from git, where it shipped), on its
# held-out split, which every edition holds out: the card's table stays comparable whatever
# model is bundled when this runs.
FIRST=${FIRST_MODEL:-${RUN%/}.first-model}
if [ ! -f "$FIRST/config.json" ]; then
    rm -rf "$FIRST.partial" && mkdir -p "$FIRST.partial"
    for name in config.json model.safetensors split_manifest.csv; do
        git show "$FIRST_EDITION:src/deepfake_detect/bundled/$name" > "$FIRST.partial/$name"
    done
    mv "$FIRST.partial" "$FIRST"
fi
[ -f "$M/everyday.json" ] || python scripts/everyday_changes.py --data "$DATA" --split test \
    --manifest "$FIRST/split_manifest.csv" --model "$FIRST" --model "$RUN" --json "$M/everyday.json"
CURVE=()
[ -f docs/learning_curve.md ] && CURVE=(--learning-curve docs/learning_curve.md)
python scripts/export_bundled_model.py "$RUN" "$DATA" --eval "$M/heldout" \
    --false-alarms "$M/utkface" --diffusion "$M/diffusion-heldout.json" \
    --everyday "$M/everyday.json" "${CURVE[@]}"
# The int8 file: the bundled weights fine-tuned through simulated int8 to give their own fp32
# logits (about 25 minutes on two CPUs; learning rate chosen on set-apart training images),
# scored against fp32 on the validation and held-out images, and shipped, marked as the default
# precision only if both meet the clause (docs/experiments.md, "Training for int8").
Q="$M/int8"
[ -f "$Q/distilled.pt" ] || python scripts/int8_distill.py train --data "$DATA" --lr 3e-6 \
    --steps 400 --out "$Q"
for split in valid test; do
    python scripts/int8_distill.py score --data "$DATA" --int8 "$Q/after.int8.onnx" \
        --split "$split" --json "$Q/$split.json"
done
python scripts/int8_distill.py ship --data "$DATA" --out "$Q" --valid "$Q/valid.json" \
    --heldout "$Q/test.json"
