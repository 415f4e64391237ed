#!/usr/bin/env bash
# The main job, end to end, on the embedded default (config/kamwatch.yaml):
# start the daemon, drop generated ERP exports into inbox/, and watch the
# warning emails appear as .eml files in var/mail/. No server to install.
#
# It starts from an empty inbox/ and var/ (the demo's runtime folders in this
# checkout; both are git-ignored). Set KEEP=1 to keep what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building kamwatch"
cargo build --quiet
bin=${CARGO_TARGET_DIR:-target}/debug/kamwatch

if [[ "${KEEP:-0}" != 1 ]]; then
    rm -rf var inbox
fi
mkdir -p var inbox

echo "==> checking config and rules"
"$bin" check

echo "==> starting the daemon: $bin run (log in var/demo.log)"
"$bin" run 2>var/demo.log &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null || true' EXIT
sleep 1

echo "==> dropping sample exports into inbox/ (300 accounts, 24 months, ending today)"
"$bin" generate

echo "==> waiting for the daemon to ingest, evaluate and mail"
shopt -s nullglob
count_mail() { local f=(var/mail/*.eml); echo ${#f[@]}; }
last=-1; stable=0
for _ in $(seq 1 240); do
    n=$(count_mail)
    if [[ $n -gt 0 && $n -eq $last ]]; then
        stable=$((stable + 1))
        [[ $stable -ge 3 ]] && break
    else
        stable=0
    fi
    last=$n
    sleep 0.5
done

kill -TERM $daemon
wait $daemon || true
trap - EXIT

echo
echo "==> daemon log"
sed 's/\x1b\[[0-9;]*m//g' var/demo.log
echo
n=$(count_mail)
if [[ $n -eq 0 ]]; then
    echo "no warning emails were written; see the log above" >&2
    exit 1
fi
if command -v python3 >/dev/null; then
    python3 - var/mail/*.eml <<'PY'
import collections, email, sys
from email import policy
alerts, to = set(), collections.Counter()
for path in sys.argv[1:]:
    m = email.message_from_binary_file(open(path, "rb"), policy=policy.default)
    for addr in m["To"].addresses:
        to[addr.addr_spec] += 1
    for line in m.get_body(("plain",)).get_content().splitlines():
        line = line.strip()
        if line.startswith("规则 ") or line.startswith("rule "):  # zh-CN or en
            parts = line.split(" · ")
            alerts.add((parts[0].split()[1], parts[1].split()[1]))
rules = collections.Counter(rule for rule, _ in alerts)
print(f"==> {len(sys.argv) - 1} emails in var/mail/ to {len(to)} people (owners, and managers for critical ones), about {len(alerts)} warnings:")
for rule, n in rules.most_common():
    print(f"  {n:4d}  {rule}")
PY
else
    echo "==> $n emails in var/mail/"
fi
mails=(var/mail/*.eml)
first=${mails[0]}
echo
echo "==> the first one, $first:"
if command -v python3 >/dev/null; then
    python3 - "$first" <<'PY'
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
print("To:     ", m["To"])
print("Subject:", m["Subject"])
print()
print(m.get_body(("plain",)).get_content())
PY
else
    cat "$first"
fi
