-- A random id for this database, made once when the schema reaches this
-- version: every Message-ID carries it, so two installations (or a new
-- database after an old one) never send the same Message-ID.
CREATE TABLE installation (
    id TEXT NOT NULL
);
INSERT INTO installation (id) VALUES (lower(hex(randomblob(16))));
