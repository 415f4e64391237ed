-- An evaluation after a small drop may run the rules only for the rule x
-- account pairs whose inputs changed since the last evaluation of the same
-- day (pipeline::evaluate_changed); its record says so. `partial` is 1 for
-- such a run; `accounts_run` counts the accounts for which at least one
-- rule ran (NULL in rows recorded before this migration: every account).
ALTER TABLE evaluations ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;
ALTER TABLE evaluations ADD COLUMN accounts_run INTEGER;
