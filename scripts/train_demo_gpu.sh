#!/bin/bash
# Continue the demo model's training on one GPU, each stage for a wall-clock budget.
#
#   bash scripts/train_demo_gpu.sh INIT OUT vae:SECONDS 3:SECONDS audio:SECONDS ...
#
# INIT is a full-model .safetensors (a checkpoint's ema.safetensors or an export); each stage
# starts from the previous stage's EMA. A stage's step count is its budget times the rate
# measured by a 100-step probe, so that its cosine schedule ends annealed inside the budget.
# The demo configs are bound by rendering the synthetic clips (14 loader workers), not by the
# GPU: on one H100 with 16 cores, ~180 clips/s for the VAE stage and ~110 for stage 3.
# The recipes follow INIT's VAE: demo_64_fs_gpu_*.json for a frame_stack VAE (the embedded
# model), demo_64_gpu_*.json for the causal 3D VAE (the embedded model until session 16), with
# INIT's decoder_temporal_mix, decoder_refine_channels and DiT depth set on the recipe (--set)
# so that every tensor of INIT fits.
# Runs go to OUT/<n>_<stage>; the last one is exported (fp16) to OUT/candidate.safetensors.
set -euo pipefail
PY=${PYTHON:-python3}
C=dreamactor_core/train/configs
init=$1 out=$2
shift 2
mkdir -p "$out"

# the VAE architecture, then what train.widen may have added to INIT, as recipe overrides
grown=$($PY -c "import sys; from dreamactor_core.model import weights
from dreamactor_core.train.config import growth_overrides
config = weights.read_config(sys.argv[1])
print(config.vae.architecture, *growth_overrides(config))" "$init")
read -r architecture overrides <<< "$grown"
case $architecture in frame_stack) prefix=demo_64_fs_gpu ;; *) prefix=demo_64_gpu ;; esac
sets=()
for o in $overrides; do sets+=(--set "$o"); done
config_for() { case $1 in vae) echo $C/${prefix}_vae.json ;; *) echo $C/${prefix}_stage3.json ;; esac; }

steps_per_s() {  # mean logged rate past step 50: the loader's prefetched batches come free
    $PY - "$1" "$2" <<'EOF'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1] + "/metrics.csv")) if int(r["step"]) > 50]
print(sum(float(r["samples_per_s"]) for r in rows) / len(rows) / int(sys.argv[2]))
EOF
}

n=0
for spec in "$@"; do
    stage=${spec%%:*} budget=${spec##*:} n=$((n + 1))
    config=$(config_for "$stage")
    batch=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['batch_size'])" "$config")
    rm -rf "$out/probe"
    $PY -m dreamactor_core.train --config "$config" ${sets[@]+"${sets[@]}"} --stage "$stage" --steps 100 \
        --out "$out/probe" --init "$init" > "$out/probe.log" 2>&1 || { cat "$out/probe.log"; exit 1; }
    rate=$(steps_per_s "$out/probe" "$batch")
    steps=$($PY -c "print(max(100, int($rate * $budget)))")
    run="$out/${n}_${stage}"
    echo "$(date +%T) stage $stage: $rate steps/s -> $steps steps ($budget s) -> $run"
    $PY -m dreamactor_core.train --config "$config" ${sets[@]+"${sets[@]}"} --stage "$stage" --steps "$steps" \
        --out "$run" --init "$init" > "$run.log" 2>&1 || { tail -20 "$run.log"; exit 1; }
    tail -1 "$run.log"
    init=$(ls -d "$run"/checkpoints/step_*/ | tail -1)ema.safetensors
done
rm -rf "$out/probe"
$PY -m dreamactor_core.train.export --run "$run" --weights ema --out "$out/candidate.safetensors"
echo "$(date +%T) done"
