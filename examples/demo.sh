#!/usr/bin/env bash
# The whole Stage 3 pipeline on the embedded demo data (real BigEarthNet S1/S2
# pairs that ship inside the bigearthnet-common package), on a CPU, in minutes:
#   prepare --demo -> train (tiny TerraMind, random weights unless pretrained
#   files are found) -> evaluate -> infer -> visualize
# Usage: bash examples/demo.sh [OUTPUT_DIR]   (default: ./demo-output)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
OUT="${1:-demo-output}"
AXION="$AXION_VENV/bin/axion"

# TerraMind's pretrained files are used when present (HF cache or AXION_WEIGHTS_DIR);
# offline, the demo trains the tiny model from random weights.
PRETRAINED=(--no-pretrained)
if [ -n "${AXION_WEIGHTS_DIR:-}" ]; then PRETRAINED=(--pretrained --weights-dir "$AXION_WEIGHTS_DIR"); fi
LPIPS=(--lpips-weight 0)
if [ -n "${AXION_LPIPS_WEIGHTS:-}" ]; then LPIPS=(--lpips-weights "$AXION_LPIPS_WEIGHTS"); fi

"$AXION" stage3 prepare --demo --output-dir "$OUT/tiles" --overwrite
"$AXION" stage3 train --data-dir "$OUT/tiles" --output-dir "$OUT/checkpoints" \
    --model-size tiny "${PRETRAINED[@]}" "${LPIPS[@]}" \
    --epochs 10 --timesteps 2 --batch-size 1 --grad-accum 1 --lr 5e-3 --num-workers 0
"$AXION" stage3 evaluate --checkpoint "$OUT/checkpoints/best_model.pt" \
    --data-dir "$OUT/tiles" --output-dir "$OUT/results" "${LPIPS[@]}"
# The demo's test tiles have ground truth and no Stage 2 outputs: opt_v2 is the training proxy,
# asked for explicitly (this evaluates the pipeline; new data brings --stage2-dir or a scene).
"$AXION" stage3 infer --checkpoint "$OUT/checkpoints/best_model.pt" \
    --input-dir "$OUT/tiles/test" --output-dir "$OUT/outputs" --proxy-from-ground-truth --overwrite
"$AXION" stage3 visualize --results "$OUT/results" --output-dir "$OUT/visualizations"

echo
echo "Demo finished. Results:"
echo "  tiles:           $OUT/tiles"
echo "  checkpoints:     $OUT/checkpoints (best_model.pt, metrics.jsonl, tensorboard/)"
echo "  evaluation:      $OUT/results (per_tile.csv, summary.json)"
echo "  opt_v3 outputs:  $OUT/outputs"
echo "  figures:         $OUT/visualizations"
