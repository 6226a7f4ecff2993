#!/bin/bash
cd "$(dirname "$0")/../../.."  # the repository root
export SKINLESION_DATA="${SKINLESION_DATA:?set it to the data folder}" PYTHONHASHSEED=0 SKINLESION_PROFILE=ci
for s in 0 1; do for f in none asff_text; do
  out=.cache/scale128/$f-seed$s
  [ -f $out/DONE ] && continue
  echo "=== $(date -u +%FT%TZ) start $f seed $s"
  nice -n 19 .venv/bin/python -m skinlesion_utils train --model asff_resnet50 --fusion $f --profile ci --recipe fast --image-size 128 --epochs 20 --seed $s --out $out --resume && touch $out/DONE
  echo "=== $(date -u +%FT%TZ) end $f seed $s rc=$?"
done; done
