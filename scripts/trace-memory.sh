#!/usr/bin/env bash
# Where the daemon's memory goes, phase by phase: `kamwatch run` on a copy
# of a book made by scripts/bench-live.sh, its resident set (VmRSS, VmHWM)
# sampled every 0.1 s into OUT/rss.txt ("epoch-seconds rss-MiB peak-MiB"),
# and marks for each phase into OUT/marks.txt: the metrics read, DROPS
# small orders files (50 lines, one day) and REEXPORTS re-exports of
# 10,000 existing lines, each waited for until evaluated. The daemon's log
# (debug) is OUT/daemon.log (its "memory given back" lines say what the
# allocator holds in live allocations and freed, after each evaluation);
# OUT/smaps_rollup.txt is the resident set by kind at the end. Prints the
# highest sample.
#
#   scripts/trace-memory.sh BIN WORK OUT [DROPS] [REEXPORTS]
#   WRAP="heaptrack -o /tmp/ht" scripts/trace-memory.sh ...   # with a heap profile
#   SIGNAL=KILL WRAP="heaptrack -o /tmp/ht" ...   # what it holds at rest, as "leaked"
#
# WORK is bench-live.sh's folder (book/var/kamwatch.db and gen/); it is
# only read. The rules and config are this tree's, with
# alerts.max_per_rule raised as bench-live.sh does. Asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1 work=$2 out=$3 n=${4:-3} r=${5:-1}
export KAMWATCH_NOW=2026-11-28T04:00:00Z
. scripts/book-copy.sh
book_copy "$work" "$out"
db=$out/var/kamwatch.db
orders=$(ls "$work"/gen/销售明细_*.csv | head -1)
header=$(head -1 "$orders")
ids=$(sqlite3 "$db" "SELECT id FROM accounts WHERE active = 1 ORDER BY id LIMIT 50")
stride=$(( $(wc -l < "$orders") / 10000 )); (( stride >= 1 )) || stride=1
count() { sqlite3 "$db" "SELECT COUNT(*) FROM evaluations"; }
ts() { date +%s.%N; }
KAMWATCH_LOG=kamwatch=debug ${WRAP:-} "$bin" run --config "$out/kamwatch.yaml" 2>"$out/daemon.log" &
d=$!
# The daemon itself: $d, or the process WRAP started it as (found by its
# own config path, which only this run uses: the newest such process, as
# the wrapper's own command line names it too).
pid() {
    if [[ -z ${WRAP:-} ]]; then echo $d; return; fi
    pgrep -n -f -- "run --config $out/kamwatch.yaml" 2>/dev/null || echo $d
}
( while kill -0 $d 2>/dev/null; do
    awk -v t="$(ts)" '/VmRSS|VmHWM/ { v[$1] = $2 } END { printf "%s %d %d\n", t, v["VmRSS:"] / 1024, v["VmHWM:"] / 1024 }' /proc/"$(pid)"/status 2>/dev/null || true
    sleep 0.1
  done ) > "$out/rss.txt" &
sampler=$!
mark() { echo "$(ts) MARK $*" >> "$out/marks.txt"; }
mark start
until grep -q "metrics read into memory" "$out/daemon.log"; do sleep 0.2; done
mark loaded
sleep 1
for i in $(seq 1 "$n"); do
    { echo "$header"; k=0; for id in $ids; do k=$((k + 1)); echo "BENCH$i-$k,1,$id,x,2026-11-28,SP-001,x,$((k % 7 + 1)),10.00,$((k * 13 + i)).50,$((k * 9)).25"; done; } > "$out/staging/销售明细_bench$i.csv"
    e=$(count); mark "drop $i"
    mv "$out/staging/销售明细_bench$i.csv" "$out/inbox/"
    until [[ $(count) -gt $e ]]; do sleep 0.05; done; mark "drop $i done"
done
for i in $(seq 1 "$r"); do
    awk -F, -v n="$i" -v s="$stride" -v OFS=, 'NR == 1 { print } NR > 1 && NR % s == 0 && c < 10000 {
        $10 = sprintf("%.2f", $10 * (1.01 + n / 100)); $11 = sprintf("%.2f", $11 * 1.005); print; c++ }' "$orders" > "$out/staging/销售明细_reexport$i.csv"
    e=$(count); mark "reexport $i"
    mv "$out/staging/销售明细_reexport$i.csv" "$out/inbox/"
    until [[ $(count) -gt $e ]]; do sleep 0.05; done; mark "reexport $i done"
done
sleep 1
mark end
# What is resident, by kind (heap, file-backed, anonymous), before the end.
cat /proc/"$(pid)"/smaps_rollup > "$out/smaps_rollup.txt" 2>/dev/null || true
# Stopped, and waited for at most a minute: a daemon left running would
# share the machine with the next run's figures.
kill -"${SIGNAL:-TERM}" "$(pid)"
for _ in $(seq 600); do kill -0 $d 2>/dev/null || break; sleep 0.1; done
if kill -0 $d 2>/dev/null; then
    echo "trace-memory: the daemon did not stop within 60 s of SIG${SIGNAL:-TERM}; killing it" >&2
    kill -KILL "$(pid)" $d 2>/dev/null || true
fi
wait $d || true
sleep 0.3; kill $sampler 2>/dev/null || true
sort -n -k3 "$out/rss.txt" | tail -1
