#!/usr/bin/env bash
# The shipped rules before and after issue 17, as the owners would feel
# them: how many alerts each rule starts per owner and week over the last
# year of the generated two-year book. Prints a table; asserts nothing.
#
#   scripts/backtest-rules.sh
#   BEFORE=/path/to/old/kamwatch BEFORE_RULES=/path/to/old/rules scripts/backtest-rules.sh
#
# Before: the binary, rules and config as they were when issue 17 began
# (BEFORE_COMMIT, default 0d42219^). Without BEFORE the script builds that
# commit (debug) in a worktree of its own (BEFORE_TREE, default
# /work/wt/ship17-before) with its own target dir (BEFORE_TARGET, default
# BEFORE_TREE-target; a `cp -al` of this tree's target/debug saves most of
# the build), and deletes both at the end unless KEEP_BEFORE=1. BEFORE_RULES
# and BEFORE_CONFIG default to that commit's rules/ and config/kamwatch.yaml.
# After: this tree's debug build (AFTER to use another binary), rules/ and
# config/kamwatch.yaml.
#
# The book: `kamwatch generate --seed 7 --accounts 2000 --months 24 --end
# 2026-11-29` (SEED, ACCOUNTS, END), written once by the after binary and
# ingested into one database per side. The generator writes no receivables
# and no stock, so overdue_receivables and stock_cover start nothing on
# either side. Each side is replayed with `kamwatch backtest --every week
# --format json` over the last year (END - 364 days .. END, 53 weekly
# evaluations), twice:
#   - as shipped (each rule's own settings): starts, and every mail the
#     owners would get (notices: starts, severity rises, repeats, the
#     manager's copy, resolved notices);
#   - with repeats, the manager's copy and resolved notices off (alerts:
#     defaults, and rule_settings for a rule whose SETTINGS set them) and
#     --max-per-owner-week 0, so the JSON's `floods` lists every owner-week
#     with its notices, which are then starts and severity rises only
#     (`raised` says how many of those there are; the starts are the same
#     in both runs, the lifecycle settings do not change when an alert
#     starts).
# Columns, before | after: starts; owner-weeks with any start; the mean
# starts per owner-week over all owners x weeks (owners: those in the
# master) and over the owner-weeks with any; the most in one owner-week;
# notices as shipped. Takes about 8 minutes on 2 busy cores (debug).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
seed=${SEED:-7}
accounts=${ACCOUNTS:-2000}
end=${END:-2026-11-29}
from=$(date -d "$end - 364 days" +%F)
commit=$(git rev-parse "${BEFORE_COMMIT:-0d42219^}")
work=$(mktemp -d)
tree=${BEFORE_TREE:-/work/wt/ship17-before}
target=${BEFORE_TARGET:-$tree-target}
built_tree=
cleanup() {
    rm -rf "$work"
    if [[ -n $built_tree && ${KEEP_BEFORE:-0} != 1 ]]; then
        git worktree remove --force "$tree" 2>/dev/null || true
        rm -rf "$target"
    fi
}
trap cleanup EXIT

after=${AFTER:-}
if [[ -z $after ]]; then
    cargo build --quiet --bin kamwatch
    after=$here/target/debug/kamwatch
fi
before=${BEFORE:-}
if [[ -z $before ]]; then
    if [[ ! -d $tree ]]; then
        git worktree add --detach "$tree" "$commit" >/dev/null
        built_tree=1
    fi
    if [[ ! -d $target && -d target/debug ]]; then
        mkdir -p "$target" && cp -al target/debug "$target/" && rm -rf "$target/debug/incremental"
    fi
    (cd "$tree" && CARGO_TARGET_DIR=$target cargo build --quiet --bin kamwatch)
    before=$target/debug/kamwatch
fi
mkdir -p "$work/before" "$work/after"
if [[ -n ${BEFORE_RULES:-} ]]; then
    cp -r "$BEFORE_RULES" "$work/before/rules"
else
    git archive "$commit" rules | tar -x -C "$work/before"
fi
if [[ -n ${BEFORE_CONFIG:-} ]]; then
    cp "$BEFORE_CONFIG" "$work/before/base.yaml"
else
    git show "$commit:config/kamwatch.yaml" > "$work/before/base.yaml"
fi
cp -r rules "$work/after/rules"
cp config/kamwatch.yaml "$work/after/base.yaml"

# config SIDE MODE: the side's config with root, rules and database in the
# work folder; MODE "starts" turns repeats, escalation and resolved notices off.
config() {
    local side=$1 mode=$2 f=$work/$1/$2.yaml
    sed -e "s|^root: .*|root: $work/$side|" -e "s|^rules: .*|rules: $work/$side/rules|" \
        -e "s|^database: .*|database: $work/$side/kamwatch.db|" \
        -e "s|^inbox: .*|inbox: inbox|" "$work/$side/base.yaml" > "$f"
    if [[ $mode == starts ]]; then
        sed -i -e 's|^  repeat_interval_days: .*|  repeat_interval_days: 0|' \
            -e 's|^  escalate_after_days: .*|  escalate_after_days: 0|' \
            -e 's|^  escalate_critical: .*|  escalate_critical: false|' \
            -e 's|^  notify_resolved: .*|  notify_resolved: false|' "$f"
        local over=""
        for r in "$work/$side"/rules/*.rhai; do
            if grep -q 'SETTINGS.*\(repeat_interval_days\|escalate_after_days\|notify_resolved\)' "$r"; then
                over+="  $(basename "$r" .rhai): { repeat_interval_days: 0, escalate_after_days: 0, notify_resolved: false }"$'\n'
            fi
        done
        if [[ -n $over ]]; then
            printf 'rule_settings:\n%s' "$over" >> "$f"
        fi
    fi
    echo "$f"
}

echo "== book: generate --seed $seed --accounts $accounts --months 24 --end $end"
"$after" generate --config "$(config after mail)" --out "$work/gen" --seed "$seed" \
    --accounts "$accounts" --months 24 --end "$end" | tail -1
owners=$(tail -n +2 "$work"/gen/客户主数据_*.csv | cut -d, -f4 | sort -u | wc -l)
for side in before after; do
    bin=$before; [[ $side == after ]] && bin=$after
    mkdir -p "$work/$side/inbox"
    for f in "$work"/gen/客户主数据_*.csv "$work"/gen/拜访记录_*.csv "$work"/gen/销售明细_*.csv; do
        "$bin" ingest --config "$(config $side mail)" "$f" >/dev/null
    done
    for mode in mail starts; do
        echo "== $side ($mode): backtest --from $from --to $end --every week --format json"
        "$bin" backtest --config "$(config $side $mode)" --from "$from" --to "$end" --every week \
            --max-per-owner-week 0 --format json > "$work/$side.$mode.json"
    done
done

echo "== before: $commit ($before); after: $(git rev-parse --short HEAD) ($after)"
echo "== $owners owners, weekly evaluations $from .. $end"
python3 - "$work" "$owners" <<'EOF'
import json, sys
work, owners = sys.argv[1], int(sys.argv[2])
def load(side, mode):
    return {r["rule"]: r for r in map(json.loads, open(f"{work}/{side}.{mode}.json"))}
data = {s: (load(s, "mail"), load(s, "starts")) for s in ("before", "after")}
weeks = None
def figures(side, rule):
    mail, starts = data[side]
    if rule not in mail:
        return None
    m, s = mail[rule], starts[rule]
    global weeks
    weeks = weeks or m["evaluations"]
    cells = [n for (_, _, n) in s["floods"]]
    raised = sum(cells) - s["started"]
    return dict(starts=m["started"], weeks=len(cells),
                mean_all=m["started"] / (owners * m["evaluations"]),
                mean_any=m["started"] / len(cells) if cells else 0.0,
                max=max(cells, default=0), notices=m["notices"], raised=raised)
rules = sorted(set(data["before"][0]) | set(data["after"][0]))
rows = [("rule", "starts", "owner-weeks", "mean/owner-week", "mean/active", "max", "notices", "raised")]
def cell(f, k, fmt):
    return "-" if f is None else fmt.format(f[k])
for r in rules:
    b, a = figures("before", r), figures("after", r)
    row = [r]
    for k, fmt in (("starts", "{}"), ("weeks", "{}"), ("mean_all", "{:.3f}"),
                   ("mean_any", "{:.2f}"), ("max", "{}"), ("notices", "{}"), ("raised", "{}")):
        row.append(f"{cell(b, k, fmt)} | {cell(a, k, fmt)}")
    rows.append(tuple(row))
widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
for i, r in enumerate(rows):
    print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    if i == 0:
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
print(f"\nbefore | after. starts: alerts that started; owner-weeks: owner x week pairs with "
      f"any start; mean/owner-week: starts / ({owners} owners x {weeks} weeks); mean/active: "
      "starts / owner-weeks; max: the most in one owner-week; notices: every mail as shipped; "
      "raised: severity rises of open alerts, which the JSON counts with the starts of their "
      "owner-week (owner-weeks and max may include them).")
EOF
