#!/bin/bash
# Session 6: `seedtree bench-serve`, then problems per hour without Ray, with 1 replica x 2 CPUs
# and with 2 replicas x 1 CPU (GSM8K, 4 problems, 2 passes in rotated order), alone on the machine.
# Run from the repository root with .venv active; outputs under OUT (default /tmp/seedtree-bench).
OUT=${OUT:-/tmp/seedtree-bench}
mkdir -p "$OUT"
seedtree bench-serve --task gsm8k --limit 2 --repeat 3 --dtype bfloat16 --k 3 --b 1 --depth 2 --out "$OUT/serve"
COMMON="--task gsm8k --limit 4 --dtype bfloat16 --method seed-batched --k 3 --b 1 --depth 2"
for pass in 1 2; do
  if [ $pass = 1 ]; then order="local ray1 ray2"; else order="ray2 local ray1"; fi
  for cfg in $order; do
    case $cfg in
      local) extra="";;
      ray1) extra="--ray local --replicas 1 --cpus-per-replica 2";;
      ray2) extra="--ray local --replicas 2 --cpus-per-replica 1";;
    esac
    out="$OUT/ray_${cfg}_p$pass"; rm -rf "$out"
    t0=$(date +%s.%N)
    seedtree run $COMMON $extra --out "$out" > "$out.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    echo "$cfg pass $pass rc $rc wall $(echo "$t1 - $t0" | bc)" >> "$OUT/ray_times.txt"
  done
done
