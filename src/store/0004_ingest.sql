-- The day a snapshot file was written (a date in its name, else its mtime),
-- so an older customer master dropped late cannot undo a newer one.
ALTER TABLE ledger ADD COLUMN file_date TEXT;
CREATE INDEX ledger_dataset_date ON ledger(dataset, outcome, file_date);
