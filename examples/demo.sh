#!/usr/bin/env bash
# The whole Stage 3 pipeline on the embedded demo data (real BigEarthNet S1/S2
# pairs that ship inside the bigearthnet-common package), on a CPU, in minutes:
#   prepare --demo (64 px windows) -> train -> evaluate -> infer -> visualize
# Usage: bash examples/demo.sh [OUTPUT_DIR]   (default: ./demo-output)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
OUT="${1:-demo-output}"
AXION="$AXION_VENV/bin/axion"

# A folder an earlier demo made (it holds the marker) is replaced; any other existing folder is left alone.
if [ -e "$OUT" ]; then
    if [ -f "$OUT/.axion-demo" ]; then
        rm -rf "$OUT"
    else
        echo "error: $OUT exists and was not made by this demo; give another folder: bash examples/demo.sh DIR" >&2
        exit 2
    fi
fi
mkdir -p "$OUT" && touch "$OUT/.axion-demo"

# Which arm trains. With TerraMind's pretrained files (AXION_WEIGHTS_DIR) the tiny TerraMind arm;
# offline there are none, and a random TerraMind contributes nothing by construction (its UNet's
# output layer is zero; docs/model.md), so the demo trains the fusion network alone on opt_v2 + SAR
# (--generator none, the control arm), which is also about ten times faster per step on a CPU.
if [ -n "${AXION_WEIGHTS_DIR:-}" ]; then
    ARM=(--generator terramind --model-size tiny --pretrained --weights-dir "$AXION_WEIGHTS_DIR" --timesteps 1)
else
    echo "No TerraMind weights (AXION_WEIGHTS_DIR unset): training the fusion network alone (--generator none)."
    ARM=(--generator none)
fi
# The loss is the guide's: five terms at their default weights, SAR agreement choosing
# best_model.pt (docs/losses.md). LPIPS needs ImageNet AlexNet weights, which are never
# downloaded: with AXION_LPIPS_WEIGHTS (or torchvision's cache) it is on, otherwise off.
TORCH_CACHE="${TORCH_HOME:-$HOME/.cache/torch}/hub/checkpoints/alexnet-owt-7be5be79.pth"
if [ -n "${AXION_LPIPS_WEIGHTS:-}" ] || [ -f "$TORCH_CACHE" ]; then
    RECIPE=()
else
    echo "No LPIPS weights (AXION_LPIPS_WEIGHTS unset, none in torchvision's cache): the LPIPS term is off."
    RECIPE=(--lpips-weight 0)
fi

# The six 120 px pairs cut into 64 px windows every 28 px: 54 tiles, a pair's windows in one split.
"$AXION" stage3 prepare --demo --tile-size 64 --stride 28 --output-dir "$OUT/tiles"
# Up to 120 epochs of 5 steps on one cosine schedule (the whole demo: about 3 minutes on a 2-core
# CPU with native bf16, about 8 on one without); training stops once SAR agreement has not
# improved for 40 epochs (the guide's default patience, 5, would stop inside its early plateau).
"$AXION" stage3 train --data-dir "$OUT/tiles" --output-dir "$OUT/checkpoints" "${ARM[@]}" "${RECIPE[@]}" \
    --epochs 120 --early-stop-patience 40 --batch-size 8 --grad-accum 1 --num-workers 0 --log-every 1000
"$AXION" stage3 evaluate --checkpoint "$OUT/checkpoints/best_model.pt" \
    --data-dir "$OUT/tiles" --output-dir "$OUT/results" "${RECIPE[@]}"
# The demo's test tiles have ground truth and no Stage 2 outputs: opt_v2 is the training proxy,
# asked for explicitly (this evaluates the pipeline; new data brings --stage2-dir or a scene).
"$AXION" stage3 infer --checkpoint "$OUT/checkpoints/best_model.pt" \
    --input-dir "$OUT/tiles/test" --output-dir "$OUT/outputs" --proxy-from-ground-truth
"$AXION" stage3 visualize --results "$OUT/results" --output-dir "$OUT/visualizations"

echo
echo "Demo finished. Results:"
echo "  tiles:           $OUT/tiles"
echo "  checkpoints:     $OUT/checkpoints (best_model.pt, metrics.jsonl, tensorboard/)"
echo "  evaluation:      $OUT/results (per_tile.csv, summary.json)"
echo "  opt_v3 outputs:  $OUT/outputs"
echo "  figures:         $OUT/visualizations"
