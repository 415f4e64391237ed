#!/usr/bin/env bash
# Backtest benchmark: daily evaluations over a generated book, the figure
# issue 9 sets a bar for (a year over 20k accounts in under a minute on 2
# cores).
#
#   scripts/bench-backtest.sh [ACCOUNTS] [DAYS]   # default 20000 365
#
# Generates ACCOUNTS accounts with 24 months of history ending 2026-11-28,
# ingests them, then times `kamwatch backtest` over the last DAYS days,
# daily, and prints wall and CPU time, peak RSS, rule x account runs per
# second and the load average before and after. Release build (PROFILE=dev
# for a quick try of the script itself).
#
#   BEFORE=/path/to/old/kamwatch BEFORE_DAYS=30 scripts/bench-backtest.sh
#
# also times another binary (e.g. a release build of an earlier commit) on
# the same data over its last BEFORE_DAYS days, for a before/after figure.
# Needs GNU time (Debian package time).
set -euo pipefail
cd "$(dirname "$0")/.."
accounts=${1:-20000}
days=${2:-365}
profile=${PROFILE:-release}
end=2026-11-28

cargo build --profile "$profile" --quiet
dir=$profile; [[ $profile == dev ]] && dir=debug
bin=$PWD/target/$dir/kamwatch
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e "s|^root: \.\.|root: $work|" -e "s|^rules: rules|rules: $PWD/rules|" \
    config/kamwatch.yaml > "$work/kamwatch.yaml"
cfg=(--config "$work/kamwatch.yaml")

echo "== $accounts accounts, 24 months of history ending $end"
"$bin" generate "${cfg[@]}" --out "$work/gen" --accounts "$accounts" --seed 2 --end "$end"
for f in "$work"/gen/客户主数据_*.csv "$work"/gen/拜访记录_*.csv "$work"/gen/销售明细_*.csv; do
    "$bin" ingest "${cfg[@]}" "$f" >/dev/null
done

# Times `backtest` of binary $1 over the last $2 days and prints the figures.
run() {
    local b=$1 n=$2
    local from
    from=$(date -d "$end - $((n - 1)) days" +%F)
    echo "== $(basename "$b") backtest --from $from --to $end ($n daily evaluations)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" \
        "$b" backtest "${cfg[@]}" --from "$from" --to "$end" --format json > "$work/out.json"
    read -r secs user sys kb < "$work/time"
    local rules
    rules=$(wc -l < "$work/out.json")
    echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
    awk -v s="$secs" -v u="$user" -v y="$sys" -v kb="$kb" -v n="$n" -v a="$accounts" -v r="$rules" 'BEGIN {
        printf "wall %.1f s, cpu %.1f s user + %.1f s sys, peak RSS %.0f MiB\n", s, u, y, kb / 1024
        printf "%.2f s a replayed day; %.0f rule x account runs/s (%d rules x %d accounts x %d days)\n",
            s / n, r * a * n / s, r, a, n }'
}

run "$bin" "$days"
if [[ -n ${BEFORE:-} ]]; then
    run "$BEFORE" "${BEFORE_DAYS:-30}"
fi
