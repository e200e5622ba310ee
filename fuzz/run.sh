#!/usr/bin/env bash
# fuzz/run.sh — runs each libFuzzer target for a bounded time (default 60 s each,
# two at a time on a 2-core machine) on a scratch copy of its seed corpus plus the
# kept regressions. A finding (crash, sanitizer report, an exception other than
# minidl::Error, a leak, a timeout, memory past 2 GB) fails the run and leaves the
# input in build/asan/findings/; fix it and copy it to fuzz/regressions/<target>/.
#
#   cmake --preset asan && cmake --build --preset asan -j2 && fuzz/run.sh [SECONDS]
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
bin=build/asan/fuzz
work=$(mktemp -d)
findings=build/asan/findings
mkdir -p "$findings"
trap 'rm -rf "$work"' EXIT

run_one() {
  local target=$1 max_len=$2
  mkdir -p "$work/$target"
  cp fuzz/corpus/"$target"/* "$work/$target"/ 2>/dev/null
  cp fuzz/regressions/"$target"/* "$work/$target"/ 2>/dev/null
  "$bin/fuzz_$target" "$work/$target" -max_total_time="$seconds" -max_len="$max_len" -timeout=20 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/$target-" >"$work/$target.log" 2>&1
  local rc=$?
  local execs
  execs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$work/$target.log" | grep -o '[0-9]*$')
  local cov
  cov=$(grep -o 'cov: [0-9]*' "$work/$target.log" | tail -1)
  if [ $rc -eq 0 ]; then
    echo "fuzz_$target: ${execs:-?} executions in ${seconds} s, ${cov:-cov ?}, no findings"
  else
    echo "fuzz_$target: FINDING (exit $rc) after ${execs:-?} executions; input in $findings/, log below"
    tail -40 "$work/$target.log"
  fi
  return $rc
}

run_one safetensors 65536 & a=$!
run_one idx 16384 & b=$!
wait $a; ra=$?
wait $b; rb=$?
run_one checkpoint 65536 & c=$!
run_one text 256 & d=$!
wait $c; rc=$?
wait $d; rd=$?
[ $ra -eq 0 ] && [ $rb -eq 0 ] && [ $rc -eq 0 ] && [ $rd -eq 0 ]
