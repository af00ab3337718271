#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes with cargo-fuzz (libFuzzer, AddressSanitizer, debug
# assertions, a nightly toolchain): the weight file fed in chunks (weights_stream), the model
# config a header carries (config), a link's latent (link), the command line's image input
# (image). Each target starts from the committed seeds in fuzz/seeds/TARGET and keeps what it
# finds in target/fuzz-corpus/TARGET; a crash stops the script with the input saved under
# fuzz/artifacts/TARGET/ (make it a regression test, then delete it).
#
#   bash tools/fuzz.sh [SECONDS] [TARGET...]     # default: 20 s for each target (what CI runs)
#
# Prints, per target, the executions, their rate, the corpus size and the result.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/lib.sh
secs=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(weights_stream config link image)
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: SECONDS must be a positive integer, got \"$secs\"" >&2; exit 2; }
rustup toolchain list | grep -q '^nightly' || timed "rustup toolchain install nightly" \
  rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || timed "cargo install cargo-fuzz" cargo install cargo-fuzz --version 0.13.2 --locked
# The largest seed (a weight file) sets the input length libFuzzer tries.
max_len=32768
timed "fuzz build" cargo +nightly fuzz build --fuzz-dir fuzz
for t in "${targets[@]}"; do
  [ -d "fuzz/seeds/$t" ] || { echo "fuzz.sh: no target \"$t\" (fuzz/seeds/$t is missing)" >&2; exit 2; }
  mkdir -p "target/fuzz-corpus/$t"
  log=$(mktemp)
  set +e
  cargo +nightly fuzz run --fuzz-dir fuzz "$t" "target/fuzz-corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -max_len="$max_len" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  corpus=$(find "target/fuzz-corpus/$t" -type f | wc -l)
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log"
    echo "fuzz $t: FAILED (exit $rc) after ${runs:-?} executions; input in fuzz/artifacts/$t/" >&2
    rm -f "$log"
    exit 1
  fi
  echo "fuzz $t: ${runs:-?} executions in ${secs} s (${rate:-?}/s), corpus $corpus inputs, 0 crashes"
  rm -f "$log"
done
