-- What an ingested file did, row by row: rows read (good and bad), stored,
-- replaced (rows of earlier files with the same key; for receivables and
-- inventory the previous snapshot's rows) and skipped (bad rows under
-- on_error: skip_rows). `rows` stays the rows stored. NULL for files
-- ingested before this migration, and for rejected and duplicate files.
ALTER TABLE ledger ADD COLUMN rows_read INTEGER;
ALTER TABLE ledger ADD COLUMN rows_replaced INTEGER;
ALTER TABLE ledger ADD COLUMN rows_skipped INTEGER;
