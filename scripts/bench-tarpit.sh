#!/usr/bin/env bash
# Delivery against a tarpit: the daemon mails through an SMTP server on
# 127.0.0.1 that accepts the connection and then drips one byte every 3 s
# (never a whole line), against one that answers at once.
#
#   scripts/bench-tarpit.sh
#
# For each server: generated exports for 300 accounts go into the inbox
# (the evaluation queues the mail and delivery starts), then one small
# visits file is dropped and the time from the drop to its evaluation is
# measured (from the database); then SIGTERM, and the time to exit and the
# daemon's peak RSS (GNU time). Release build (PROFILE=dev to try the
# script). Needs python3, sqlite3 and GNU time (Debian: sqlite3, time).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
cargo build --profile "$profile" --quiet
dir=$profile; [[ $profile == dev ]] && dir=debug
bin=$PWD/target/$dir/kamwatch
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
now() { date +%s.%N; }

# The server: `drip` sends "220 ..." a byte every 3 s; `ok` speaks enough
# SMTP to take every message.
cat > "$work/server.py" <<'EOF'
import socket, sys, threading, time
mode, port_file = sys.argv[1], sys.argv[2]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16)
open(port_file, "w").write(str(s.getsockname()[1]))
def drip(c):
    try:
        while True:
            for b in b"220 tarpit ESMTP":
                c.send(bytes([b])); time.sleep(3)
    except OSError:
        pass
def ok(c):
    f = c.makefile("rb")
    try:
        c.sendall(b"220 ok ESMTP\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.strip().upper()
            if cmd == b"DATA":
                c.sendall(b"354 go\r\n")
                while f.readline() not in (b".\r\n", b""):
                    pass
                c.sendall(b"250 queued\r\n")
            elif cmd.startswith(b"EHLO"):
                c.sendall(b"250-ok\r\n250 8BITMIME\r\n")
            elif cmd == b"QUIT":
                c.sendall(b"221 bye\r\n"); return
            else:
                c.sendall(b"250 ok\r\n")
    except OSError:
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=drip if mode == "drip" else ok, args=(c,), daemon=True).start()
EOF

"$bin" generate --config config/kamwatch.yaml --out "$work/gen" --accounts 300 --seed 1 >/dev/null

run() {
    local mode=$1 d=$work/$1
    mkdir -p "$d/inbox" "$d/staging"
    python3 "$work/server.py" "$mode" "$d/port" & pids+=($!)
    while [[ ! -s $d/port ]]; do sleep 0.05; done
    sed -e "s|^root: \.\.|root: $d|" -e "s|^rules: rules|rules: $PWD/rules|" \
        -e "s|^  # catch_all: sales-ops@example.com|  catch_all: sales-ops@example.com|" \
        -e "s|^  dir: var/mail|  dir: var/mail\n  smtp:\n    host: 127.0.0.1\n    port: $(cat "$d/port")\n    security: none\n    timeout_secs: 10\n    message_deadline_secs: 120|" \
        config/kamwatch.yaml > "$d/kamwatch.yaml"
    local db=$d/var/kamwatch.db
    count() { sqlite3 "$db" "$1" 2>/dev/null || echo 0; }
    /usr/bin/time -f "%M" -o "$d/rss" "$bin" run --config "$d/kamwatch.yaml" 2>"$d/log" & local daemon=$!
    pids+=($daemon)
    cp "$work"/gen/*.csv "$d/staging/"
    for f in "$d"/staging/*.csv; do mv "$f" "$d/inbox/"; done
    until [[ $(count "SELECT COUNT(*) FROM evaluations") -ge 1 ]]; do sleep 0.05; done
    sleep 2 # delivery is under way (stuck, for the tarpit)
    local evals; evals=$(count "SELECT COUNT(*) FROM evaluations")
    printf '拜访日期,客户编号,拜访人,职务,拜访类型,备注\n%s,KH1001,张伟,业务员,上门拜访,\n' \
        "$(date +%Y-%m-%d)" > "$d/staging/拜访记录_extra.csv"
    local t0; t0=$(now)
    mv "$d/staging/拜访记录_extra.csv" "$d/inbox/"
    until [[ $(count "SELECT COUNT(*) FROM evaluations") -gt $evals ]]; do sleep 0.01; done
    local t1; t1=$(now)
    local sent; sent=$(count "SELECT COUNT(*) FROM outbox WHERE state = 'sent'")
    local pending; pending=$(count "SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
    # SIGTERM to the daemon (the child of GNU time).
    local kpid; kpid=$(pgrep -P "$daemon" kamwatch || echo "$daemon")
    local t2; t2=$(now)
    kill -TERM "$kpid"
    wait "$daemon" || true
    local t3; t3=$(now)
    printf '%-8s drop->evaluated %6.2f s   SIGTERM->exit %5.2f s   peak RSS %6.1f MiB   outbox at the drop: %s sent, %s pending\n' \
        "$mode" "$(echo "$t1 - $t0" | bc)" "$(echo "$t3 - $t2" | bc)" \
        "$(echo "$(cat "$d/rss") / 1024" | bc -l)" "$sent" "$pending"
}

run ok
run drip
