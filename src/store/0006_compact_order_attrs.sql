-- Order attributes, compactly. Until now every order line kept its extra
-- columns as a JSON object, the column names repeated in every row (40% of
-- the bytes of a typical export). From now on a line keeps only the values,
-- as a JSON array (null for an empty cell), and `attr_layout` points at the
-- column names, stored once per distinct header. Lines written before keep
-- their JSON object and a NULL `attr_layout`; both read back the same way,
-- through the view `orders_attrs`.
CREATE TABLE attr_layouts (
    id INTEGER PRIMARY KEY,
    names TEXT NOT NULL UNIQUE  -- JSON array of the attribute names, in column order
);
ALTER TABLE orders ADD COLUMN attr_layout INTEGER REFERENCES attr_layouts(id);

-- No reader uses the (account, date) index: the metrics load scans the table
-- in its own key order (NOT INDEXED), four times faster than through the
-- index. Yet it cost every ingest a second B-tree: a third of the bytes, and
-- a random insert per row (or a sort of the whole table after a bulk load).
-- A configured upsert key other than (order id, line) gets an index of its
-- own when a file is written with it (store::KeyDelete).
DROP INDEX IF EXISTS orders_account_date;

-- Every order line with its attributes as a JSON object {name: value} of
-- the non-empty extra columns (NULL when there are none), whichever way
-- they were stored.
CREATE VIEW orders_attrs AS
SELECT o.order_id, o.line, o.account_id, o.date, o.sku, o.qty, o.revenue, o.cost,
       CASE WHEN o.attrs IS NULL OR o.attr_layout IS NULL THEN o.attrs
            ELSE (SELECT json_group_object(n.value, v.value)
                  FROM json_each(l.names) AS n JOIN json_each(o.attrs) AS v ON v.key = n.key
                  WHERE v.type <> 'null')
       END AS attrs
FROM orders AS o LEFT JOIN attr_layouts AS l ON l.id = o.attr_layout;
