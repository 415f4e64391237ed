-- The order lines of one account, read from the index alone. After each
-- file the daemon reads again the lines of every account the file wrote
-- (metrics::reread); through `orders_by_account` (account id only) each
-- line was then looked up in the table by its key, one random page each:
-- a 10,000-line re-export touching 9,500 of 100,000 accounts read 850,000
-- lines that way, about 3 s. This index holds every column those reads
-- take, in the order they take them (date, then the table's key), so an
-- account's lines are one contiguous range of it and no table page is
-- read. It replaces `orders_by_account` (its leading column serves the
-- same lookups). Its price: about 2.5 times that index's bytes (70 MB per
-- million lines instead of 29 MB) and, for a bulk load, a longer index
-- build at the end (store::suspend_indexes takes its SQL from
-- sqlite_master, so the rebuild follows this definition).
CREATE INDEX IF NOT EXISTS orders_lines_by_account
    ON orders (account_id, date, order_id, line, sku, qty, revenue, cost);
DROP INDEX IF EXISTS orders_by_account;
