#!/usr/bin/env bash
# Load benchmark: (1) 1,000 export files dropped into a running daemon at
# once; (2) a large history — ingest, evaluation time and peak memory.
#
#   scripts/bench-load.sh [ROWS]     # default 1000000; 10000000 for the 10M figure
#
# Prints wall time, throughput and peak RSS of each step. Release build
# (PROFILE=dev for a quick try of the script itself). Needs sqlite3 and GNU
# time (Debian packages sqlite3, time).
set -euo pipefail
cd "$(dirname "$0")/.."
rows_wanted=${1:-1000000}
profile=${PROFILE:-release}

cargo build --profile "$profile" --quiet
dir=$profile; [[ $profile == dev ]] && dir=debug
bin=$PWD/target/$dir/kamwatch
work=$(mktemp -d)
trap 'kill $daemon 2>/dev/null || true; rm -rf "$work"' EXIT
daemon=
sed -e "s|^root: \.\.|root: $work|" -e "s|^rules: rules|rules: $PWD/rules|" \
    config/kamwatch.yaml > "$work/kamwatch.yaml"
cfg=(--config "$work/kamwatch.yaml")
db=$work/var/kamwatch.db
count() { sqlite3 "$db" "$1" 2>/dev/null || echo 0; }
now() { date +%s.%N; }

echo "== 1,000 files at once"
"$bin" generate "${cfg[@]}" --out "$work/gen" --accounts 300 --seed 1 >/dev/null
mkdir -p "$work/split" "$work/inbox"
orders=$(ls "$work"/gen/销售明细_*.csv)
header=$(head -1 "$orders")
tail -n +2 "$orders" > "$work/body.csv"
split -n l/1000 -d -a 4 "$work/body.csv" "$work/split/part"
for f in "$work"/split/part*; do
    { echo "$header"; cat "$f"; } > "$f.csv.tmp"
    mv "$f.csv.tmp" "$work/split/销售明细_$(basename "$f").csv"
    rm "$f"
done
mv "$work"/gen/客户主数据_*.csv "$work/inbox/"
"$bin" run "${cfg[@]}" 2>"$work/daemon.log" &
daemon=$!
until [[ $(count "SELECT COUNT(*) FROM ledger") -ge 1 ]]; do sleep 0.1; done
t0=$(now)
mv "$work"/split/销售明细_*.csv "$work/inbox/"
until [[ $(count "SELECT COUNT(*) FROM ledger") -ge 1001 ]]; do sleep 0.05; done
t1=$(now)
rss=$(awk '/VmHWM/ {print $2}' /proc/$daemon/status)
kill -TERM $daemon; wait $daemon || true; daemon=
rows=$(count "SELECT COUNT(*) FROM orders")
awk -v t="$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')" -v rows="$rows" -v rss="$rss" 'BEGIN {
    printf "1000 files, %d rows: %.2f s, %.0f files/s, %.0f rows/s; daemon peak RSS %.0f MiB\n", rows, t, 1000 / t, rows / t, rss / 1024 }'

echo "== about $rows_wanted order rows of history"
rm -rf "$work/var" "$work/inbox" "$work/gen"
# About 100 order lines per account over 24 months at this scale.
accounts=$(( rows_wanted / 100 ))
"$bin" generate "${cfg[@]}" --out "$work/gen" --accounts "$accounts" --seed 2 --end 2026-11-28
for f in "$work"/gen/客户主数据_*.csv "$work"/gen/拜访记录_*.csv "$work"/gen/销售明细_*.csv; do
    /usr/bin/time -f "%e %M" -o "$work/time" "$bin" ingest "${cfg[@]}" "$f" >/dev/null
    read -r secs kb < "$work/time"
    n=$(tail -n +2 "$f" | wc -l)
    awk -v f="$(basename "$f")" -v s="$secs" -v kb="$kb" -v n="$n" 'BEGIN {
        printf "ingest %-36s %9d rows %7.2f s %9.0f rows/s  peak RSS %5.0f MiB\n", f, n, s, n / s, kb / 1024 }'
done
for i in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$work/time" "$bin" eval "${cfg[@]}" --as-of 2026-11-28 --dry-run >/dev/null 2>&1
    read -r secs kb < "$work/time"
    echo "eval --dry-run over $accounts accounts (run $i): $secs s, peak RSS $((kb / 1024)) MiB"
done
