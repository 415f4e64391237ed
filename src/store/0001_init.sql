-- Files seen in the inbox: one row per attempt. A file whose hash has an
-- 'ingested' row is a re-drop and is counted nowhere.
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY,
    file_name TEXT NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    dataset TEXT,
    rows INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL CHECK (outcome IN ('ingested', 'duplicate', 'rejected')),
    reason TEXT,
    at TEXT NOT NULL
);
CREATE INDEX ledger_hash ON ledger(hash, outcome);

-- Customer master (snapshot: accounts missing from the newest file become inactive).
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT,
    owner TEXT,
    owner_email TEXT,
    manager_email TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL
);

-- Order lines (events, upserted by order id + line).
CREATE TABLE orders (
    order_id TEXT NOT NULL,
    line TEXT NOT NULL,
    account_id TEXT NOT NULL,
    date TEXT NOT NULL,
    sku TEXT,
    qty REAL,
    revenue REAL NOT NULL,
    cost REAL NOT NULL,
    PRIMARY KEY (order_id, line)
) WITHOUT ROWID;
CREATE INDEX orders_account_date ON orders(account_id, date);

-- Sales visits (events, upserted by account + date + visitor).
CREATE TABLE visits (
    account_id TEXT NOT NULL,
    date TEXT NOT NULL,
    visitor TEXT NOT NULL,
    role TEXT,
    PRIMARY KEY (account_id, date, visitor)
) WITHOUT ROWID;

-- Alert state: one row per (rule, account, key).
CREATE TABLE alerts (
    rule TEXT NOT NULL,
    account_id TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    figures TEXT NOT NULL,
    action TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    resolved_at TEXT,
    PRIMARY KEY (rule, account_id, key)
);

-- Every state change of every alert, never rewritten.
CREATE TABLE alert_history (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    account_id TEXT NOT NULL,
    key TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    figures TEXT NOT NULL,
    as_of TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX alert_history_account ON alert_history(account_id, rule);

-- Messages to send. Written in the same transaction as the alert change that
-- caused them, so a crash neither loses nor repeats a warning.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    rule TEXT,
    account_id TEXT,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX outbox_pending ON outbox(state, next_attempt_at);

-- One row per evaluation that changed state.
CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY,
    as_of TEXT NOT NULL,
    accounts INTEGER NOT NULL,
    rules INTEGER NOT NULL,
    raised INTEGER NOT NULL,
    started INTEGER NOT NULL,
    resolved INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    at TEXT NOT NULL
);
