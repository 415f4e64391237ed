#!/usr/bin/env bash
# Behaviour unchanged, checked: the outputs of one fixed demo book, written
# to a folder, to compare byte for byte with the same run of another build.
#
#   scripts/same-output.sh OUT [BIN]    # BIN defaults to target/debug/kamwatch
#   diff -r REF OUT                     # empty when nothing changed
#
# The book is generated from a fixed seed and end date; every command is run
# with a fixed --as-of/--from/--to, so the outputs depend on the build only.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/same-output.sh OUT [BIN]}
bin=$(realpath "${2:-target/debug/kamwatch}")
rm -rf "$out"; mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/inbox" "$work/var" "$work/config"
cp -r rules "$work/"; [ -d templates ] && cp -r templates "$work/"
cp config/kamwatch.yaml "$work/config/kamwatch.yaml"
cd "$work"
cfg=(--config "$work/config/kamwatch.yaml")
"$bin" generate "${cfg[@]}" --out "$work/drop" --seed 7 --accounts 300 --months 24 --end 2026-06-30 >/dev/null
"$bin" ingest "${cfg[@]}" "$work"/drop/* > "$out/ingest.txt" 2>&1 || echo "exit $?" >> "$out/ingest.txt"
for fmt in text json; do
    "$bin" eval "${cfg[@]}" --dry-run --as-of 2026-06-30 --format $fmt > "$out/eval.$fmt" 2>&1 || echo "exit $?" >> "$out/eval.$fmt"
    "$bin" backtest "${cfg[@]}" --from 2026-01-01 --to 2026-06-30 --every week --format $fmt > "$out/backtest.$fmt" 2>&1 || echo "exit $?" >> "$out/backtest.$fmt"
done
"$bin" accounts "${cfg[@]}" --as-of 2026-06-30 > "$out/accounts.txt" 2>&1 || echo "exit $?" >> "$out/accounts.txt"
"$bin" eval "${cfg[@]}" --explain --rule declining_orders --account "$(sed -n 2p "$out/eval.text" | grep -o 'KH[0-9]*' | head -1 || true)" --as-of 2026-06-30 > "$out/explain.txt" 2>&1 || echo "exit $?" >> "$out/explain.txt"
"$bin" review "${cfg[@]}" --as-of 2026-06-30 --out "$out/review" > /dev/null 2>&1 || echo "review exit $?" >> "$out/check.txt"
"$bin" check "${cfg[@]}" > "$out/check.txt" 2>&1 || echo "exit $?" >> "$out/check.txt"
# durations differ from run to run
sed -i -E 's/\b[0-9]+(\.[0-9]+)? ?(ms|s)\b/T/g; s/"(seconds|elapsed[a-z_]*|ms)": ?[0-9.]+/"\1": T/g' "$out"/*.txt "$out"/*.text "$out"/*.json
# the scratch folder's name is the one thing that differs between runs
grep -rlF "$work" "$out" | xargs -r sed -i "s|$work|WORK|g"
(cd "$out" && find . -type f | sort | xargs wc -c)
