-- The order lines of one account, found without reading the whole table:
-- the daemon keeps its metrics in memory and, after each file, re-reads
-- only the accounts whose lines the file wrote (metrics::live). Only the
-- account id: the lines of one account are few enough to sort by date, and
-- the index is a third smaller than the (account, date) one dropped in
-- 0006. A bulk load still drops and rebuilds it once (store::suspend_indexes).
CREATE INDEX IF NOT EXISTS orders_by_account ON orders (account_id);
