#!/usr/bin/env bash
# tools/compile_times.sh — where a clean build's time goes: builds PRESET
# (default: default) from scratch in build/compile-times/PRESET with every
# compiler call wrapped in a timer, then prints the slowest objects and the
# total compile time per kind of file. CI builds two presets on two cores inside
# a 15-minute budget (.ci/run); this says which files to look at first.
#
#   tools/compile_times.sh [PRESET] [TOP]      # e.g. tools/compile_times.sh asan 25
#
# Run it alone: other work on the machine's two cores stretches every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-default}
top=${2:-20}
dir=build/compile-times/$preset
rm -rf "$dir"
mkdir -p "$dir"
log=$(realpath "$dir")/times.tsv
launcher=$(realpath "$dir")/timed.sh
# The launcher: run the compiler, append "seconds<TAB>output file" to the log.
cat >"$launcher" <<EOF
#!/usr/bin/env bash
out=unknown
prev=
for a in "\$@"; do [ "\$prev" = -o ] && out=\$a; prev=\$a; done
t0=\$(date +%s.%N)
"\$@"
rc=\$?
printf '%.2f\t%s\n' "\$(echo "\$(date +%s.%N) - \$t0" | bc)" "\$out" >>"$log"
exit \$rc
EOF
chmod +x "$launcher"
start=$(date +%s)
cmake --preset "$preset" -B "$dir" -DCMAKE_CXX_COMPILER_LAUNCHER="$launcher" \
  -DCMAKE_CUDA_COMPILER_LAUNCHER="$launcher" >/dev/null
cmake --build "$dir" -j2 >/dev/null
wall=$(($(date +%s) - start))
echo "clean build of preset '$preset': ${wall} s wall on $(nproc) cores"
echo
echo "slowest $top objects (seconds, object):"
sort -rn "$log" | sed -n "1,${top}p" | sed 's|CMakeFiles/[^/]*\.dir/||'
echo
echo "compile seconds by target:"
awk -F'\t' '{ target = "other";
  if (match($2, /[A-Za-z0-9_]+\.dir\//)) target = substr($2, RSTART, RLENGTH - 5);
  s[target] += $1; n[target]++; total += $1 }
  END { for (t in s) printf "  %7.1f s  %3d objects  %s\n", s[t], n[t], t; printf "  %7.1f s  all\n", total }' \
  "$log" | sort -rn
