-- Alert lifecycle (pending -> firing -> resolved), silences, held
-- notifications and the mail each caused. The old `alerts` table only knew
-- firing/resolved, so it is rebuilt with the new states and counters.
CREATE TABLE alerts_v3 (
    rule TEXT NOT NULL,
    account_id TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('inactive', 'pending', 'firing', 'resolved')),
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    figures TEXT NOT NULL,
    action TEXT NOT NULL,
    -- as-of dates (YYYY-MM-DD) of the evaluations that moved it
    pending_count INTEGER NOT NULL DEFAULT 0,
    pending_since TEXT,
    started_at TEXT,
    last_seen_at TEXT,
    cleared_since TEXT,
    resolved_at TEXT,
    -- what has been told about the current firing episode
    notified INTEGER NOT NULL DEFAULT 0,
    notified_severity TEXT,
    last_notified_at TEXT,
    aged_notified INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rule, account_id, key)
);
INSERT INTO alerts_v3 (rule, account_id, key, state, severity, title, figures, action,
                       pending_count, started_at, last_seen_at, resolved_at,
                       notified, notified_severity, last_notified_at)
SELECT rule, account_id, key, state, severity, title, figures, action,
       1, substr(started_at, 1, 10), substr(last_seen_at, 1, 10), substr(resolved_at, 1, 10),
       1, severity, substr(started_at, 1, 10)
FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_v3 RENAME TO alerts;

-- History rows may now also record a notice (what was told, or held back).
ALTER TABLE alert_history ADD COLUMN event TEXT;
CREATE INDEX alert_history_as_of ON alert_history(as_of);

-- Silences: matching alerts are recorded but not mailed, through `until`.
CREATE TABLE silences (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,            -- a rule name, or '*' for every rule
    account_id TEXT,
    tier TEXT,
    owner TEXT,                    -- owner name or owner email
    until TEXT NOT NULL,           -- last as-of date silenced (inclusive)
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expired_at TEXT,
    CHECK ((account_id IS NOT NULL) + (tier IS NOT NULL) + (owner IS NOT NULL) = 1)
);

-- One notice about one alert (started, repeat, raised, aged, resolved):
-- held during a quiet window, then mailed (alone or in a digest), or kept
-- as a record only (silenced, unroutable).
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    account_id TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    as_of TEXT NOT NULL,
    item TEXT NOT NULL,            -- JSON: everything needed to render it
    recipients TEXT NOT NULL,      -- JSON: [{name, email}]
    state TEXT NOT NULL CHECK (state IN ('held', 'mailed', 'silenced', 'unroutable')),
    released_as_of TEXT
);
CREATE INDEX notifications_state ON notifications(state);
CREATE INDEX notifications_as_of ON notifications(as_of);

-- Which outbox message carried which notice (a digest carries several).
CREATE TABLE notification_mail (
    notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    outbox_id INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    PRIMARY KEY (notification_id, outbox_id)
);
CREATE INDEX notification_mail_outbox ON notification_mail(outbox_id);
