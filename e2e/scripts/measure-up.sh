#!/usr/bin/env bash
# Measures a warm `e2e/cluster up --nodes N`: wall time from command start to all nodes
# Ready, and the control plane's memory (sum of RSS of every process started from the
# cluster's directory, sampled each second during the up and for SETTLE seconds after;
# plus each process's own peak, VmHWM). Leaves the cluster down.
#
#   e2e/scripts/measure-up.sh N [SETTLE]     (cluster name: $ZOP_CLUSTER, default zop-measure)
set -euo pipefail

e2e=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
n=${1:?usage: measure-up.sh N [SETTLE]}; settle=${2:-60}
export ZOP_CLUSTER=${ZOP_CLUSTER:-zop-measure}
state=$e2e/.state/$ZOP_CLUSTER

pids() {
  local f
  for f in /proc/[0-9]*/cmdline; do
    [[ $( { tr '\0' ' ' <"$f"; } 2>/dev/null) == *"$state/"* ]] && echo "${f//[^0-9]/}"
  done
  return 0
}
kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
sample() {
  local sum=0 p r
  for p in $(pids); do r=$(kib "$p" VmRSS); sum=$((sum + ${r:-0})); done
  echo "$sum"
}

"$e2e/cluster" down >/dev/null
"$e2e/cluster" up --nodes 0 >/dev/null 2>&1 && "$e2e/cluster" down >/dev/null  # warm: tools, cargo
peak=0
start=$(date +%s.%N)
"$e2e/cluster" up --nodes "$n" >"$e2e/.state/measure-$n.log" 2>&1 &
up=$!
while kill -0 "$up" 2>/dev/null; do
  s=$(sample); [ "$s" -gt "$peak" ] && peak=$s; sleep 1
done
wait "$up" || { cat "$e2e/.state/measure-$n.log"; exit 1; }
took=$(echo "$(date +%s.%N) - $start" | bc)
for _ in $(seq "$settle"); do s=$(sample); [ "$s" -gt "$peak" ] && peak=$s; sleep 1; done
echo "nodes=$n up_to_all_ready_s=$took peak_rss_sum_mib=$((peak / 1024)) rss_after_${settle}s_mib=$(($(sample) / 1024))"
for p in $(pids); do
  hwm=$(kib "$p" VmHWM); rss=$(kib "$p" VmRSS)
  printf '  %-24s VmHWM %5d MiB  VmRSS %5d MiB\n' "$(tr '\0' '\n' <"/proc/$p/cmdline" | head -1 | xargs basename)" \
    $((${hwm:-0} / 1024)) $((${rss:-0} / 1024))
done
grep -E '^(nodes|cluster)' "$e2e/.state/measure-$n.log" | sed 's/^/  /'
"$e2e/cluster" down >/dev/null
