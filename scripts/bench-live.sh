#!/usr/bin/env bash
# A big book live: the daemon on a large generated book, this build side by
# side with another one (BEFORE=<binary>, e.g. a release build of main).
#
#   BEFORE=/path/to/main/kamwatch scripts/bench-live.sh [ACCOUNTS]
#
# ACCOUNTS defaults to 100000 (about 8.75M order lines and 10.9M visits over
# 24 months, a 3 GB database). The book is generated and ingested once, with
# the BEFORE build if given (its schema; this build migrates its own copy),
# and evaluated once with `kamwatch eval` so the daemons start with the
# alerts already on record. Then, for each build, on its own copy of the
# database:
#   - `kamwatch run` is started: seconds to READY (the log's "kamwatch
#     started") and, for a build that keeps its metrics in memory, until
#     they are read ("metrics read into memory");
#   - DROPS small orders files (one day, 50 new lines for 50 accounts) are
#     renamed into the inbox one after the other: time from the rename to
#     the evaluation committed (its row in `evaluations`; the mail it caused
#     is queued in that transaction) — median and worst;
#   - REEXPORTS files of 10,000 existing order lines with changed amounts:
#     the same time;
#   - the daemon's peak RSS (VmHWM) once the metrics are read, and after
#     all of it.
# "Today" is pinned to the last day of the book (KAMWATCH_NOW). Release
# build (into CARGO_TARGET_DIR if set). Needs sqlite3. WORK=<dir> keeps
# (and reuses) the generated book;
# KEEP=1 keeps each run's folder (its daemon.log says how each file was read;
# `renamed` the time of each rename, to read beside the log's; LOG= sets the
# daemon's KAMWATCH_LOG, e.g. LOG=kamwatch=debug for the ingest's and the
# refresh's phases);
# BEFORE_TREE=<checkout of the BEFORE build's commit> gives the BEFORE daemon
# the config and rules of its own time (a newer config may not parse).
# RESTART=1 starts each daemon a second time at the end, on its own
# database: READY and the metrics read without the first start's
# migration (the book is made with BEFORE's schema, so the first start of
# a newer build migrates it).
# RUNS=<dir> puts those folders (a copy of the database each) there instead
# of in WORK, so a book shared with others is only read.
# Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
accounts=${1:-100000}
drops=${DROPS:-10}
reexports=${REEXPORTS:-3}
before_drops=${BEFORE_DROPS:-$drops}
before_reexports=${BEFORE_REEXPORTS:-$reexports}
export KAMWATCH_NOW=2026-11-28T04:00:00Z

profile=${PROFILE:-release}   # PROFILE=dev: a quick try of the script itself
cargo build --profile "$profile" --quiet
dir=$profile; [[ $profile == dev ]] && dir=debug
after=${CARGO_TARGET_DIR:-$PWD/target}/$dir/kamwatch
before=${BEFORE:-}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
daemon=
trap '[[ -n $daemon ]] && kill $daemon 2>/dev/null || true' EXIT

project() { # project DIR [TREE]: a config whose root is DIR, the shipped rules (of TREE)
    local tree=${2:-$PWD}
    mkdir -p "$1/inbox"
    # The cap on alerts per rule is raised: at 100,000 accounts the
    # generated book has about 40,000 lapsed accounts, and a capped rule
    # records nothing for them, which would make each evaluation cheaper
    # than a real one.
    sed -e "s|^root: \.\.|root: $1|" -e "s|^rules: rules|rules: $tree/rules|" \
        -e "s|^  max_per_rule: .*|  max_per_rule: 1000000|" \
        "$tree/config/kamwatch.yaml" > "$1/kamwatch.yaml"
}
now() { date +%s.%N; }

book=$work/book
if [[ ! -f $book/var/kamwatch.db ]]; then
    rm -rf "$book"
    prep=${before:-$after}
    # Prepared by BEFORE with its own rules (a rule of this tree may call
    # what BEFORE does not have: its eval would fail, and the script stop).
    project "$book" "$([[ -n $before ]] && echo "${BEFORE_TREE:-$PWD}" || echo "$PWD")"
    # Files generated before (by any build: generate writes the same
    # files for the same seed) are used again.
    ls "$work"/gen/销售明细_*.csv >/dev/null 2>&1 ||
        "$prep" generate --config "$book/kamwatch.yaml" --out "$work/gen" --accounts "$accounts" --seed 2 --end 2026-11-28 >/dev/null
    for f in "$work"/gen/客户主数据_*.csv "$work"/gen/拜访记录_*.csv "$work"/gen/销售明细_*.csv; do
        t0=$(now)
        "$prep" ingest --config "$book/kamwatch.yaml" "$f" >/dev/null
        echo "prepared: ingest $(basename "$f"): $(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s"
    done
    t0=$(now)
    "$prep" eval --config "$book/kamwatch.yaml" >/dev/null
    echo "prepared: first evaluation: $(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s"
fi
db=$book/var/kamwatch.db
echo "book: $(sqlite3 "$db" 'SELECT COUNT(*) FROM accounts') accounts, $(sqlite3 "$db" 'SELECT COUNT(*) FROM orders') order lines, $(sqlite3 "$db" 'SELECT COUNT(*) FROM visits') visits, $(du -h "$db" | cut -f1)"

orders=$(ls "$work"/gen/销售明细_*.csv | head -1)
header=$(head -1 "$orders")
ids=$(sqlite3 "$db" "SELECT id FROM accounts WHERE active = 1 ORDER BY id LIMIT 50")

# small_drop N: 50 new lines dated today, one for each of 50 accounts.
small_drop() {
    echo "$header"
    local k=0
    for id in $ids; do
        k=$((k + 1))
        echo "BENCH$1-$k,1,$id,x,2026-11-28,SP-001,x,$((k % 7 + 1)),10.00,$((k * 13 + $1)).50,$((k * 9)).25"
    done
}
# reexport N: 10,000 existing lines (a stride through the export; all of
# a smaller one) with their amount and cost changed.
stride=$(( $(wc -l < "$orders") / 10000 )); (( stride >= 1 )) || stride=1
relines=$(( $(wc -l < "$orders") / stride )); (( relines <= 10000 )) || relines=10000
reexport() {
    echo "$header"
    awk -F, -v n="$1" -v s="$stride" -v OFS=, 'NR > 1 && NR % s == 0 && c < 10000 {
        $10 = sprintf("%.2f", $10 * (1.01 + n / 100)); $11 = sprintf("%.2f", $11 * 1.005); print; c++ }' "$orders"
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
worst() { sort -n | tail -1; }

# start LOG: starts $bin on $cfg (the caller's), logging to LOG; sets
# daemon, ready (seconds to "kamwatch started") and loaded (to "metrics
# read into memory", or - for a build without it).
start() {
    local t0; t0=$(now)
    KAMWATCH_LOG=${LOG:-kamwatch=info} "$bin" run --config "$cfg" 2>"$1" &
    daemon=$!
    until grep -q "kamwatch started" "$1"; do
        kill -0 $daemon 2>/dev/null || { echo "$label: the daemon stopped:"; cat "$1"; exit 1; }
        sleep 0.05
    done
    ready=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
    loaded=-
    if grep -q "metrics read into memory" "$bin" 2>/dev/null; then
        until grep -q "metrics read into memory" "$1"; do sleep 0.1; done
        loaded=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
    fi
}

runs=${RUNS:-$work}
mkdir -p "$runs"
# wait_evaluated E LOG: until more than E evaluations are on record. A
# daemon that stopped, or none on record 300 s after, is reported with
# its log's last errors instead of waited for (a failed evaluation used
# to wait for the next file).
wait_evaluated() {
    local limit=$((SECONDS + 300))
    until [[ $(count) -gt $1 ]]; do
        if ! kill -0 "$daemon" 2>/dev/null || ((SECONDS > limit)); then
            echo "$label: no evaluation on record after the rename; the daemon's last errors:" >&2
            grep -E " (ERROR|WARN) " "$2" | tail -5 >&2
            exit 1
        fi
        sleep 0.01
    done
}
run() { # run LABEL BINARY DROPS REEXPORTS [TREE]
    local label=$1 bin=$2 n=$3 r=$4 dir=$runs/run-$1
    rm -rf "$dir"
    project "$dir" "${5:-}"
    mkdir -p "$dir/var" "$dir/staging"
    cp "$db" "$dir/var/kamwatch.db"
    local cfg=$dir/kamwatch.yaml d=$dir/var/kamwatch.db
    count() { sqlite3 "$d" "SELECT COUNT(*) FROM evaluations"; }
    local ready loaded
    start "$dir/daemon.log"
    local rss_loaded; rss_loaded=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' /proc/$daemon/status)
    local hwm_loaded; hwm_loaded=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' /proc/$daemon/status)
    : > "$dir/small" ; : > "$dir/big" ; : > "$dir/renamed"
    local i e
    for i in $(seq 1 "$n"); do
        small_drop "$i" > "$dir/staging/销售明细_bench$i.csv"
        e=$(count)
        t0=$(now)
        mv "$dir/staging/销售明细_bench$i.csv" "$dir/inbox/"
        echo "bench$i renamed at $(date -u -d "@$t0" +%H:%M:%S.%N)" >> "$dir/renamed"
        wait_evaluated "$e" "$dir/daemon.log"
        awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f\n", a - b }' >> "$dir/small"
    done
    for i in $(seq 1 "$r"); do
        reexport "$i" > "$dir/staging/销售明细_reexport$i.csv"
        e=$(count)
        t0=$(now)
        mv "$dir/staging/销售明细_reexport$i.csv" "$dir/inbox/"
        echo "reexport$i renamed at $(date -u -d "@$t0" +%H:%M:%S.%N)" >> "$dir/renamed"
        wait_evaluated "$e" "$dir/daemon.log"
        awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f\n", a - b }' >> "$dir/big"
    done
    local hwm rss
    hwm=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' /proc/$daemon/status)
    rss=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' /proc/$daemon/status)
    kill -TERM $daemon; wait $daemon || true; daemon=
    printf '%-7s start to READY %6s s, metrics in memory at %6s s (RSS %s MiB, peak so far %s MiB); small drop -> evaluated: median %s s, worst %s s (%s drops: %s); re-export of %s lines -> evaluated: median %s s, worst %s s (%s: %s); peak RSS %s MiB, RSS at the end %s MiB\n' \
        "$label" "$ready" "$loaded" "$rss_loaded" "$hwm_loaded" \
        "$(median < "$dir/small")" "$(worst < "$dir/small")" "$n" "$(tr '\n' ' ' < "$dir/small")" \
        "$relines" "$(median < "$dir/big")" "$(worst < "$dir/big")" "$r" "$(tr '\n' ' ' < "$dir/big")" \
        "$hwm" "$rss"
    if [[ -n ${RESTART:-} ]]; then
        # Started again on its own database (migrated, if it was, by the
        # first start): READY and the metrics without a migration.
        start "$dir/daemon-restart.log"
        kill -TERM $daemon; wait $daemon || true; daemon=
        printf '%-7s restarted: start to READY %6s s, metrics in memory at %6s s\n' "$label" "$ready" "$loaded"
    fi
    [[ -n ${KEEP:-} ]] || rm -rf "$dir"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n $before ]]; then
    run before "$before" "$before_drops" "$before_reexports" "${BEFORE_TREE:-}"
fi
run after "$after" "$drops" "$reexports"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
