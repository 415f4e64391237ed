#!/usr/bin/env bash
# A file of visits into a big book live: `kamwatch run` (BIN) on a copy of
# the book scripts/bench-live.sh made in WORK, then two files of one day's
# visits to N accounts (a CRM export; default 5,000), each timed from its
# rename into the inbox to its evaluation on record (the first after a
# start runs everything; the second is the figure). Prints those times and
# the evaluation's own log line (how many accounts and scripts ran, and
# each rule's script CPU). Asserts nothing. Needs sqlite3.
#
#   scripts/bench-visits.sh BIN WORK OUT [N]
#
# Run it with each build to compare (the same WORK, its own OUT each).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1 work=$2 out=$3 n=${4:-5000}
export KAMWATCH_NOW=2026-11-28T04:00:00Z
. scripts/book-copy.sh
book_copy "$work" "$out"
db=$out/var/kamwatch.db
day=${KAMWATCH_NOW%%T*}
sqlite3 "$db" "SELECT id FROM accounts WHERE active = 1 ORDER BY id LIMIT $n OFFSET 1000" |
    awk -v day="$day" 'BEGIN { print "拜访日期,客户编号,拜访人,职务" } { print day "," $1 ",访客" NR ",经理" }' > "$out/visits.csv"
KAMWATCH_LOG=kamwatch=info "$bin" run --config "$out/kamwatch.yaml" 2> "$out/daemon.log" &
d=$!
trap 'kill $d 2>/dev/null || true' EXIT
evaluations() { sqlite3 "$db" "SELECT COUNT(*) FROM evaluations" 2>/dev/null || echo 0; }
until grep -q "metrics read into memory" "$out/daemon.log"; do sleep 0.5; done
for k in 1 2; do
    sed "s/访客/访客$k-/" "$out/visits.csv" > "$out/staging/拜访记录_v$k.csv"
    c=$(evaluations); t0=$(date +%s.%N)
    mv "$out/staging/拜访记录_v$k.csv" "$out/inbox/"
    until [ "$(evaluations)" -gt "$c" ]; do sleep 0.05; done
    t1=$(date +%s.%N)
    echo "visits file $k ($n accounts): rename -> evaluated $(echo "$t1 - $t0" | bc) s"
done
kill $d; wait $d || true
trap - EXIT
grep "rules run only where" "$out/daemon.log" | tail -1 |
    sed 's/.*accounts_run=\([0-9]*\).*scripts=\([0-9]*\).*\(scripts_ms=.*\) memo_ms.*/accounts run \1, scripts \2, \3/'
