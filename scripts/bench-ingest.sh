#!/usr/bin/env bash
# Ingest benchmark: `kamwatch ingest` of a generated orders CSV against
# `sqlite3 .import` of the same file into a bare table, side by side in one
# run. Prints both wall times, the ratio (kamwatch / sqlite3: below 1 means
# kamwatch is faster), kamwatch's rows/s and both peak RSS figures.
#
#   scripts/bench-ingest.sh              # 1,000,000 rows
#   ROWS=5000000 scripts/bench-ingest.sh # the memory-flatness check
#   BEFORE=/path/to/old/kamwatch scripts/bench-ingest.sh
#                                        # also times another build, same file
#   BEFORE_CONFIG=/path/to/old.yaml      # its config, if the shipped one has
#                                        # keys the old build does not know
#
# Needs /usr/bin/time (GNU time) and sqlite3 (`apt-get install time sqlite3`).
# Builds kamwatch in release mode. Works in a temp folder it removes.
set -euo pipefail
cd "$(dirname "$0")/.."

rows=${ROWS:-1000000}
for tool in /usr/bin/time sqlite3; do
    command -v "$tool" >/dev/null || {
        echo "bench-ingest: $tool is missing; apt-get install time sqlite3" >&2
        exit 2
    }
done

echo "==> building kamwatch (release)"
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/kamwatch

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/config" "$work/inbox"
# The shipped config, its root (..) being the temp folder.
cp config/kamwatch.yaml "$work/config/kamwatch.yaml"
csv=$work/orders_bench.csv

echo "==> writing $rows order lines to $csv"
# The shape of the ERP fixtures: Chinese headers, 3 lines per order, 2,000
# accounts, extra columns kept as attributes.
awk -v n="$rows" 'BEGIN {
    print "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本";
    for (i = 0; i < n; i++) {
        qty = i % 200 + 1; price = (i % 37) + 0.5;
        printf "SO%08d,%d,KH%05d,客户%d,2026-%02d-%02d,SP-%03d,产品%d,%d,%.2f,%.2f,%.2f\n",
            int(i / 3), i % 3 + 1, i % 2000, i % 2000, i % 12 + 1, i % 28 + 1,
            i % 300, i % 300, qty, price, qty * price, qty * price * 0.78;
    }
}' >"$csv"
size=$(du -m "$csv" | cut -f1)
echo "    $size MiB"

# Seconds and peak RSS (KiB) of a command, from GNU time.
measure() {
    local out=$1
    shift
    /usr/bin/time -f '%e %M' -o "$out" "$@" >/dev/null
}

# Page cache warm for both: read the file once.
cat "$csv" >/dev/null

echo "==> sqlite3 .import into a bare table"
measure "$work/sqlite.time" sqlite3 "$work/bare.db" \
    -cmd '.mode csv' -cmd "PRAGMA journal_mode=WAL" ".import $csv orders"
echo "==> kamwatch ingest"
measure "$work/kamwatch.time" "$bin" --config "$work/config/kamwatch.yaml" ingest "$csv"
if [[ -n "${BEFORE:-}" ]]; then
    echo "==> $BEFORE ingest (BEFORE)"
    mkdir -p "$work/before/config"
    cp "${BEFORE_CONFIG:-config/kamwatch.yaml}" "$work/before/config/kamwatch.yaml"
    measure "$work/before.time" "$BEFORE" --config "$work/before/config/kamwatch.yaml" ingest "$csv"
fi

read -r s_sec s_rss <"$work/sqlite.time"
read -r k_sec k_rss <"$work/kamwatch.time"
stored=$(sqlite3 "$work/var/kamwatch.db" 'SELECT COUNT(*) FROM orders')
imported=$(sqlite3 "$work/bare.db" 'SELECT COUNT(*) FROM orders')
if [[ "$stored" != "$rows" || "$imported" != "$rows" ]]; then
    echo "bench-ingest: row counts differ: file $rows, kamwatch $stored, sqlite3 $imported" >&2
    exit 1
fi

awk -v rows="$rows" -v ks="$k_sec" -v ss="$s_sec" -v kr="$k_rss" -v sr="$s_rss" 'BEGIN {
    printf "\nrows             %d\n", rows;
    printf "sqlite3 .import  %6.2f s   peak RSS %6.1f MiB\n", ss, sr / 1024;
    printf "kamwatch ingest  %6.2f s   peak RSS %6.1f MiB   %d rows/s\n", ks, kr / 1024, rows / (ks > 0 ? ks : 0.01);
    printf "ratio            %.2fx (kamwatch / sqlite3; below 1 is faster)\n", ks / (ss > 0 ? ss : 0.01);
}'
if [[ -n "${BEFORE:-}" ]]; then
    read -r b_sec b_rss <"$work/before.time"
    awk -v rows="$rows" -v bs="$b_sec" -v ss="$s_sec" -v br="$b_rss" 'BEGIN {
        printf "BEFORE ingest    %6.2f s   peak RSS %6.1f MiB   %d rows/s\n", bs, br / 1024, rows / (bs > 0 ? bs : 0.01);
        printf "BEFORE ratio     %.2fx\n", bs / (ss > 0 ? ss : 0.01);
    }'
fi
