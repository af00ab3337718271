#!/usr/bin/env bash
# Trains ε-VAE and its VAE baseline side by side, one core each, in chunks of CHUNK steps, so the
# two runs always stop at the same step (the comparison needs equal images seen). Resumes the
# committed checkpoints in checkpoints/epsvae-small and checkpoints/vae-small.
#
#   bash tools/train.sh STEPS [CHUNK]        # train both runs up to STEPS steps
#   touch checkpoints/STOP                   # ends both at the next chunk boundary
#
# Backend: EPSVAE_BACKEND=tch (default; PyTorch's kernels, 3-4x faster than flex here, needs the
# binary built with `--features tch`, see README "Training") or flex. The binary: EPSVAE_BIN.
# Extra flags for `epsvae train` (e.g. --adv-start N) go in EPSVAE_TRAIN_ARGS; a run folder keeps
# its recipe in train.json, so they are only needed to change it. EPSVAE_RUN_SUFFIX=-c128 trains
# checkpoints/epsvae-small-c128 and checkpoints/vae-small-c128 instead (another pair of runs).
# EPSVAE_PRESET=small-f8 trains checkpoints/epsvae-small-f8 and checkpoints/vae-small-f8 (the
# preset is passed to every chunk); EPSVAE_INIT_FROM=DIR starts new run folders from
# DIR/epsvae-small.safetensors and DIR/vae-small.safetensors (`train --init-from`).
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:?usage: bash tools/train.sh STEPS [CHUNK]}
chunk=${2:-200}
backend=${EPSVAE_BACKEND:-tch}
preset=${EPSVAE_PRESET:-small}
ea=epsvae-$preset${EPSVAE_RUN_SUFFIX:-} va=vae-$preset${EPSVAE_RUN_SUFFIX:-}
init_a= init_b=
if [ -n "${EPSVAE_INIT_FROM:-}" ]; then
  for f in "$EPSVAE_INIT_FROM/epsvae-small.safetensors" "$EPSVAE_INIT_FROM/vae-small.safetensors"; do
    [ -f "$f" ] || { echo "train.sh: EPSVAE_INIT_FROM=$EPSVAE_INIT_FROM has no $f" >&2; exit 2; }
  done
  init_a="--init-from $EPSVAE_INIT_FROM/epsvae-small.safetensors" init_b="--init-from $EPSVAE_INIT_FROM/vae-small.safetensors"
  mkdir -p "checkpoints/$ea" "checkpoints/$va"
fi
[ -d "checkpoints/$ea" ] && [ -d "checkpoints/$va" ] || { echo "train.sh: no run folders checkpoints/$ea and checkpoints/$va (EPSVAE_INIT_FROM starts new ones)" >&2; exit 2; }
# One train.sh at a time: a second one would train the same run folders from its own copy of the
# state, both appending to the same log.csv (this happened once, by a mistaken relaunch). The lock
# is held by the training processes too, so it lasts until they end even if this script is killed.
exec 9> checkpoints/.train.lock
flock -n 9 || { echo "train.sh: another tools/train.sh (or its training processes) is running: checkpoints/.train.lock is held" >&2; exit 2; }
bin=${EPSVAE_BIN:-${CARGO_TARGET_DIR:-target}/debug/epsvae}
[ -x "$bin" ] || { echo "train.sh: no binary at $bin (set EPSVAE_BIN)" >&2; exit 2; }
if [ "$backend" = tch ]; then
  venv=${VIRTUAL_ENV:-/work/venv-torch}
  torchlib=$(ls -d "$venv"/lib/python3*/site-packages/torch/lib | head -n 1)
  export LD_LIBRARY_PATH="$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# One thread per run: two one-thread runs train more images per second in all than one run on two
# threads, and libtorch slows down badly when its threads outnumber the cores.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1
rm -f checkpoints/STOP
# The newest checkpoint of a run: ckpt-<step> with the highest step, else ckpt (the older layout).
latest() { ls -d "checkpoints/$1"/ckpt-* 2>/dev/null | sort -V | tail -n 1 | grep . || echo "checkpoints/$1/ckpt"; }
step_of() {
  local s; s="$(latest "$1")/state.json"
  if [ -f "$s" ]; then python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["step"])' "$s"; else echo 0; fi
}
# Each chunk resumes the previous chunk's checkpoint and leaves it (a process never deletes a
# checkpoint it found); remove those superseded ones here unless git tracks them.
prune() {
  local keep; keep=$(latest "$1")
  for d in "checkpoints/$1"/ckpt-*; do
    [ "$d" != "$keep" ] && [ -d "$d" ] || continue
    [ -n "$(git ls-files "$d")" ] || rm -rf "$d"
  done
}
while :; do
  a=$(step_of "$ea") b=$(step_of "$va")
  cur=$(( a < b ? a : b ))
  [ "$cur" -lt "$total" ] || break
  next=$(( cur + chunk < total ? cur + chunk : total ))
  echo "train.sh: epsvae at $a, vae at $b -> both to $next ($(date +%T))"
  # shellcheck disable=SC2086
  "$bin" train --run "checkpoints/$ea" --preset "$preset" --model epsvae --steps "$next" --backend "$backend" $init_a ${EPSVAE_TRAIN_ARGS:-} > "checkpoints/$ea/train.out" 2>&1 &
  pa=$!
  # shellcheck disable=SC2086
  "$bin" train --run "checkpoints/$va" --preset "$preset" --model vae --steps "$next" --backend "$backend" $init_b ${EPSVAE_TRAIN_ARGS:-} > "checkpoints/$va/train.out" 2>&1 &
  pb=$!
  wait "$pa" || { echo "train.sh: the epsvae run failed:"; tail -n 5 "checkpoints/$ea/train.out"; exit 1; }
  wait "$pb" || { echo "train.sh: the vae run failed:"; tail -n 5 "checkpoints/$va/train.out"; exit 1; }
  prune "$ea"; prune "$va"
  grep -h "validation" "checkpoints/$ea/train.out" "checkpoints/$va/train.out" || true
  [ ! -e checkpoints/STOP ] || { echo "train.sh: STOP found; both runs at $next"; rm -f checkpoints/STOP; break; }
done
