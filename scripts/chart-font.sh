#!/usr/bin/env bash
# Rebuilds assets/ChartCJK.ttf: the Chinese font of the charts, a subset of
# WenQuanYi Micro Hei (Apache-2.0, Debian's fonts-wqy-microhei) with printable
# ASCII and exactly the Chinese characters of the chart labels, which it
# takes from src/chart/*.rs between the "chart-font: begin" and "chart-font:
# end" markers. Run it after changing a Chinese label; the test
# chart::text::tests::every_chinese_label_is_in_the_shipped_font says when to.
# Needs: fonts-wqy-microhei, fonttools (pyftsubset).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${WQY:-/usr/share/fonts/truetype/wqy/wqy-microhei.ttc}
[ -f "$src" ] || { echo "no $src: apt-get install fonts-wqy-microhei" >&2; exit 1; }
command -v pyftsubset >/dev/null || { echo "no pyftsubset: apt-get install fonttools" >&2; exit 1; }
chars=$(sed -n '/chart-font: begin/,/chart-font: end/p' src/chart/*.rs \
    | grep -o '"[^"]*"' | tr -d '"\n' | grep -o '[^ -~]' | sort -u | tr -d '\n')
ascii=$(printf '%s' "$(seq 32 126 | awk '{printf "%c", $1}')")
pyftsubset "$src" --font-number=0 --text="$ascii$chars" \
    --layout-features='' --no-hinting --desubroutinize \
    --name-IDs='*' --output-file=assets/ChartCJK.ttf
echo "assets/ChartCJK.ttf: $(stat -c %s assets/ChartCJK.ttf) bytes, CJK characters: $chars"
