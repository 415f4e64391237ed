#!/usr/bin/env bash
# End to end against a production mail server from Debian's packages:
# aiosmtpd (python3-aiosmtpd) on 127.0.0.1 delivering into a local Maildir.
# kamwatch ingests the test fixtures, evaluates, and sends through it; the
# Maildir must then hold exactly the messages the outbox marked sent, each
# with a text and an HTML part and a [kamwatch] subject. Bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's python (apt installs the module there), else whatever python3 is.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
if ! "$PY" -c 'import aiosmtpd' 2>/dev/null; then
    echo "== installing python3-aiosmtpd"
    export DEBIAN_FRONTEND=noninteractive
    if ! { timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq python3-aiosmtpd >/dev/null; }; then
        echo "apt-get failed; trying pip"
        timeout 300 "$PY" -m pip install -q aiosmtpd
    fi
    "$PY" -c 'import aiosmtpd'
fi

bin=$PWD/target/debug/kamwatch
[ -x "$bin" ] || timeout 1200 cargo build -q
work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/rules" "$work/inbox"
"$PY" -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Mailbox "$work/maildir" \
    >"$work/smtpd.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    "$PY" -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
    sleep 0.1
done

cp rules/*.rhai "$work/rules/"
sed -e 's/^root: \.\.$/root: ./' \
    -e "s|^  dir: var/mail\$|  dir: var/mail\n  smtp:\n    host: 127.0.0.1\n    port: $port\n    security: none\n    timeout_secs: 10|" \
    config/kamwatch.yaml >"$work/config.yaml"
grep -q "port: $port" "$work/config.yaml"

k() { (cd "$work" && timeout 120 "$bin" --config "$work/config.yaml" "$@"); }
k ingest "$PWD/tests/data/客户主数据.csv"
k ingest "$PWD/tests/data/销售明细_202609-10.csv" "$PWD/tests/data/拜访记录_202609-10.csv"
k eval --as-of 2026-10-31
# A second evaluation of the same day sends nothing new.
k eval --as-of 2026-10-31

sent=$("$PY" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from outbox where state='sent'\").fetchone()[0])" "$work/var/kamwatch.db")
"$PY" - "$work/maildir" "$sent" <<'PY'
import email, email.policy, mailbox, sys
box = mailbox.Maildir(sys.argv[1], create=False)
want = int(sys.argv[2])
msgs = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in box]
assert want > 0, "the outbox sent nothing"
assert len(msgs) == want, f"{len(msgs)} messages in the Maildir, {want} sent"
ids = [m["Message-ID"] for m in msgs]
assert len(set(ids)) == len(ids), f"duplicate Message-IDs: {ids}"
charts = 0
for m in msgs:
    assert str(m["Subject"]).startswith("[kamwatch] "), m["Subject"]
    assert m.get_content_type() == "multipart/alternative", m.get_content_type()
    text = m.get_body(preferencelist=("plain",)).get_content()
    html = m.get_body(preferencelist=("html",)).get_content()
    assert "规则 " in text and "<table" in html, m["Subject"]
    for part in m.walk():
        if part.get_content_type() == "image/png":
            cid = part["Content-ID"].strip("<>")
            assert f"cid:{cid}" in html, f"{cid} not referenced"
            assert part.get_content()[:8] == b"\x89PNG\r\n\x1a\n"
            charts += 1
assert charts > 0, "no inline chart in any message"
print(f"ok: {len(msgs)} messages in the Maildir, one per sent outbox row, {charts} inline charts")
PY
