-- A silence may name the alert key it holds back (lapsed_visits raises
-- "lapsed" and "senior" for one account): NULL holds back every key of
-- the rule for the scope, as before.
ALTER TABLE silences ADD COLUMN key TEXT;
