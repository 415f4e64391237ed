-- Columns of an export beyond the canonical ones, kept as a JSON object so
-- rules can read them as attributes; and the master's credit limit and tier
-- override.
ALTER TABLE accounts ADD COLUMN attrs TEXT;
ALTER TABLE accounts ADD COLUMN credit_limit REAL;
ALTER TABLE accounts ADD COLUMN tier_override TEXT;
ALTER TABLE orders ADD COLUMN attrs TEXT;
ALTER TABLE visits ADD COLUMN attrs TEXT;

-- Open invoices (snapshot: each receivables file replaces the whole table).
CREATE TABLE receivables (
    account_id TEXT NOT NULL,
    invoice TEXT NOT NULL,
    amount REAL NOT NULL,
    due_date TEXT NOT NULL,
    invoice_date TEXT,
    attrs TEXT,
    PRIMARY KEY (account_id, invoice)
) WITHOUT ROWID;

-- Stock on hand (snapshot: each inventory file replaces the whole table).
-- account_id is '' for stock not held for one account.
CREATE TABLE inventory (
    sku TEXT NOT NULL,
    account_id TEXT NOT NULL DEFAULT '',
    on_hand REAL NOT NULL,
    attrs TEXT,
    PRIMARY KEY (sku, account_id)
) WITHOUT ROWID;
