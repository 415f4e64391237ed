#!/usr/bin/env bash
# Screenshots of the demo's messages as a reader sees them, for docs/mail.md:
# in zh-CN and in en, a digest, a single (critical) warning and the monthly
# review, each rendered from the .eml kamwatch writes (inline charts
# included) by headless Chromium into docs/img/mail-<locale>-<kind>.png.
# It also prints the largest message of each locale's run.
#
# The data is the demo's (`kamwatch generate`, 300 accounts, 24 months)
# ending on a fixed day (END, default 2026-10-31), so the pictures do not
# change with the calendar. Critical alerts go in messages of their own
# (digest.critical_immediately) so one run gives both kinds.
#
# Needs: Debian's `chromium` (or CHROMIUM=/path/to/chrome), a CJK font
# (`fonts-noto-cjk`: without it the Chinese data and text show as boxes),
# python3 (to take the HTML and its inline images out of the .eml):
#   apt-get install chromium fonts-noto-cjk python3
# Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

end=${END:-2026-10-31}
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
missing=()
[[ -n "$chromium" && -x "$chromium" ]] || missing+=("chromium (apt-get install chromium, or set CHROMIUM)")
command -v fc-list >/dev/null && fc-list :lang=zh family | grep -q . \
    || missing+=("a CJK font (apt-get install fonts-noto-cjk)")
command -v python3 >/dev/null || missing+=("python3 (apt-get install python3)")
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "mail-screenshots.sh: cannot render the messages; missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 2
fi

echo "==> building kamwatch"
cargo build --quiet
bin=$PWD/${CARGO_TARGET_DIR:-target}/debug/kamwatch
work=$(mktemp -d /tmp/kamwatch-demo.XXXXXX)
[[ "${KEEP:-0}" == 1 ]] && echo "==> working in $work (KEEP=1: kept)" \
    || trap 'rm -rf "$work"' EXIT
mkdir -p docs/img

# shot HTML PNG HEIGHT: a 720 px wide screenshot of the top HEIGHT px.
shot() {
    "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --force-device-scale-factor=1 --window-size=720,"$3" \
        --screenshot="$2" "file://$1" >/dev/null 2>&1
    [[ -s "$2" ]] || { echo "chromium wrote no $2" >&2; exit 1; }
    echo "    $2 ($(stat -c %s "$2") bytes)"
}

# html EML OUT: the HTML part of EML, its cid: images inlined as data: URIs.
html() {
    python3 - "$1" "$2" <<'PY'
import base64, email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
page = m.get_body(("html",)).get_content()
for part in m.walk():
    cid = part.get("Content-ID")
    if cid and part.get_content_maintype() == "image":
        data = base64.b64encode(part.get_payload(decode=True)).decode()
        page = page.replace("cid:" + cid.strip("<>"),
                            f"data:{part.get_content_type()};base64,{data}")
open(sys.argv[2], "w", encoding="utf-8").write(page)
PY
}

for locale in zh-CN en; do
    d=$work/$locale
    mkdir -p "$d/rules"
    cp rules/*.rhai "$d/rules/"
    sed -e 's/^root: \.\.$/root: ./' \
        -e "s/^  locale: zh-CN$/  locale: $locale/" \
        -e 's/^    critical_immediately: false$/    critical_immediately: true/' \
        config/kamwatch.yaml >"$d/kamwatch.yaml"
    grep -q "critical_immediately: true" "$d/kamwatch.yaml" \
        || { echo "config/kamwatch.yaml changed shape; update this script" >&2; exit 1; }
    k() { "$bin" "$@" --config "$d/kamwatch.yaml"; }
    echo "==> $locale: generating, ingesting, evaluating as of $end"
    k generate --out "$d/staging" --end "$end" >/dev/null
    k ingest "$d"/staging/*.csv >/dev/null
    k eval --as-of "$end" >/dev/null || true # exit 1: something fired
    mkdir -p "$d/before-review"
    cp "$d"/var/mail/*.eml "$d/before-review/"
    k review --as-of "$end" --send --out "$d/review" >/dev/null
    mails=$d/var/mail
    # The digest: the smallest with at least three items; single: the
    # smallest single warning (the review and the admin's mail are named
    # _system); review: the first the review just mailed.
    digest=""
    for f in $(ls -S -r "$mails"/*_digest.eml); do
        n=$(grep -c -E '^\s*(规则|rule) ' <(python3 -c '
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
print(m.get_body(("plain",)).get_content())' "$f") || true)
        if [[ $n -ge 3 ]]; then digest=$f; break; fi
    done
    single=$(ls -S -r "$mails"/*.eml | grep -v -e _digest -e _system | head -1 || true)
    review=$(comm -13 <(ls "$d/before-review") <(ls "$mails") | head -1)
    for kind in digest single review; do
        f=${!kind}
        [[ -n "$f" ]] || { echo "    no $kind message in the $locale run" >&2; continue; }
        [[ "$f" == /* ]] || f=$mails/$f
        echo "    $kind: $(basename "$f")"
        html "$f" "$work/$locale-$kind.html"
        case $kind in digest) h=1500 ;; single) h=800 ;; review) h=1000 ;; esac
        shot "$work/$locale-$kind.html" "docs/img/mail-$locale-$kind.png" "$h"
    done
    largest=$(ls -S "$mails"/*.eml | head -1)
    echo "==> $locale: $(ls "$mails"/*.eml | wc -l) messages; the largest is $(basename "$largest"), $(stat -c %s "$largest") bytes"
done
