# Sourced by the scripts that run the daemon on a copy of bench-live.sh's
# book: book_copy WORK OUT makes OUT a fresh project (inbox, var, staging)
# whose config is this tree's, its rules this tree's, alerts.max_per_rule
# raised as bench-live.sh does, and its database a copy of WORK's book.
book_copy() {
    local work=$1 out=$2 src=$PWD
    rm -rf "$out"; mkdir -p "$out/inbox" "$out/var" "$out/staging"
    sed -e "s|^root: \.\.|root: $out|" -e "s|^rules: rules|rules: $src/rules|" \
        -e "s|^  max_per_rule: .*|  max_per_rule: 1000000|" "$src/config/kamwatch.yaml" > "$out/kamwatch.yaml"
    cp "$work/book/var/kamwatch.db" "$out/var/kamwatch.db"
}
