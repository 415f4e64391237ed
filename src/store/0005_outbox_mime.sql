-- The rendered message (MIME, with its Date, Message-ID and inline chart),
-- kept when it is queued so a retry sends exactly the same bytes. NULL for
-- rows queued before: those are composed from subject/body at delivery.
ALTER TABLE outbox ADD COLUMN mime BLOB;
