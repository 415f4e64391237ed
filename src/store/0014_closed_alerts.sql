-- An alert can be closed: it fired `close_after_days` and was still
-- raised, so it got its final notice and stays closed while the rule keeps
-- raising it (alerts::machine). SQLite cannot change a CHECK in place, so
-- the table is rebuilt with the new state, every row and column kept.
CREATE TABLE alerts_v14 (
    rule TEXT NOT NULL,
    account_id TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('inactive', 'pending', 'firing', 'closed', 'resolved')),
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
    units TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (rule, account_id, key)
);
INSERT INTO alerts_v14 (rule, account_id, key, state, severity, title, figures, action,
                        pending_count, pending_since, started_at, last_seen_at, cleared_since,
                        resolved_at, notified, notified_severity, last_notified_at,
                        aged_notified, units)
SELECT rule, account_id, key, state, severity, title, figures, action,
       pending_count, pending_since, started_at, last_seen_at, cleared_since,
       resolved_at, notified, notified_severity, last_notified_at, aged_notified, units
FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_v14 RENAME TO alerts;
