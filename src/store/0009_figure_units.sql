-- The kind of each figure of an alert (money, percent, count, ...), as a
-- JSON object by label: mail written from a stored alert formats its
-- figures as the rule meant. '{}': plain numbers, as before.
ALTER TABLE alerts ADD COLUMN units TEXT NOT NULL DEFAULT '{}';
