#!/usr/bin/env bash
# A runaway rule in a running daemon: the map-building rule of issue 16
# (tests/data/bad-rules/map_in_loop.rhai, or RULE=file) beside the shipped
# rules, over 300 generated accounts. Prints the daemon's peak RSS, how
# long the start-up evaluation took, and the time from SIGTERM to exit when
# the signal comes DELAY seconds after the start of the next one.
#
#   scripts/bench-runaway.sh                 # the build of this tree
#   RULE=tests/data/bad-rules/map_of_arrays.rhai DELAY=1 scripts/bench-runaway.sh
#   BIN=/path/to/old/kamwatch scripts/bench-runaway.sh   # careful: the old
#       build takes GBs under this rule
#
# Release build (PROFILE=dev for a quick try). Needs sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
if [[ -z ${BIN:-} ]]; then
    cargo build --profile "$profile" --quiet
    dir=$profile; [[ $profile == dev ]] && dir=debug
    BIN=$PWD/target/$dir/kamwatch
fi
rule=${RULE:-tests/data/bad-rules/map_in_loop.rhai}
work=$(mktemp -d)
daemon=
trap 'kill -9 $daemon 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/rules"
cp rules/*.rhai "$rule" "$work/rules/"
sed -e "s|^root: \.\.|root: $work|" -e "s|^rules: rules|rules: $work/rules|" \
    config/kamwatch.yaml > "$work/kamwatch.yaml"
cfg=(--config "$work/kamwatch.yaml")
db=$work/var/kamwatch.db
now() { date +%s.%N; }
"$BIN" generate "${cfg[@]}" --out "$work/gen" --accounts 300 --seed 1 --end 2026-11-28 >/dev/null
"$BIN" ingest "${cfg[@]}" "$work"/gen/*.csv >/dev/null 2>&1 || true

start() {
    "$BIN" run "${cfg[@]}" 2>>"$work/daemon.log" &
    daemon=$!
}
evaluations() { sqlite3 "$db" "SELECT COUNT(*) FROM evaluations" 2>/dev/null || echo 0; }

# 1. The start-up evaluation (missed: data newer than any evaluation), to
# its end: how long, and the peak RSS.
t0=$(now)
start
until [[ $(evaluations) -ge 1 ]]; do
    kill -0 $daemon 2>/dev/null || { echo "the daemon died:"; tail -5 "$work/daemon.log"; exit 1; }
    sleep 0.1
done
t1=$(now)
rss=$(awk '/VmHWM/ {print $2}' /proc/$daemon/status)
kill -TERM $daemon; wait $daemon || true

# 2. The same evaluation again (forgotten, so missed), and SIGTERM
# DELAY seconds (default 0.3) after the daemon says it started.
sqlite3 "$db" "DELETE FROM evaluations"
: > "$work/daemon.log"
start
until grep -q "kamwatch started" "$work/daemon.log"; do sleep 0.02; done
sleep "${DELAY:-0.3}"
t2=$(now)
kill -TERM $daemon
wait $daemon || true
t3=$(now)
daemon=
recorded=$(evaluations)
stopped=$(grep -c "stopped before it finished" "$work/daemon.log" || true)
awk -v e="$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')" \
    -v s="$(awk -v a="$t3" -v b="$t2" 'BEGIN { print a - b }')" -v rss="$rss" \
    -v r="$recorded" -v st="$stopped" -v d="${DELAY:-0.3}" 'BEGIN {
    printf "start to first evaluation recorded: %.1f s, daemon peak RSS %.0f MiB; SIGTERM %s s into the next: exit after %.2f s (evaluation stopped: %s, recorded: %d)\n", e, rss / 1024, d, s, st ? "yes" : "no", r }'
