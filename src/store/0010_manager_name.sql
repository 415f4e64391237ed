-- The manager's name from the customer master (column mapped to `manager`),
-- so a manager's mail greets a person, not an address.
ALTER TABLE accounts ADD COLUMN manager TEXT;
