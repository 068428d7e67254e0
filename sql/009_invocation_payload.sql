-- 009_invocation_payload.sql: an invocation's record keeps its payload, so
-- that a past invocation can be inspected and run again with the same input.
-- payload is the compact JSON text of the payload when it is at most 64 KiB
-- (65536 bytes); a longer one is not kept at all (payload NULL) and
-- payload_truncated says so. Records written before this migration have
-- payload NULL and payload_truncated false. Payloads live as long as their
-- records (they go with their function or project), and every member of the
-- project can read them.
ALTER TABLE invocations
	ADD COLUMN IF NOT EXISTS payload           json,
	ADD COLUMN IF NOT EXISTS payload_truncated boolean NOT NULL DEFAULT false;
ALTER TABLE invocations DROP CONSTRAINT IF EXISTS invocations_payload_bound;
ALTER TABLE invocations ADD CONSTRAINT invocations_payload_bound
	CHECK (payload IS NULL OR octet_length(payload::text) <= 65536);

-- A queued run's record is written with its job (the enqueue functions, a
-- retry's next attempt): the job's event is its payload, copied here when
-- the job names the record (as PostgreSQL prints the jsonb, under the same
-- bound). The queue's own statements stay as they are.
CREATE OR REPLACE FUNCTION zmesh_job_payload()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	text_len integer := octet_length(NEW.event::text);
BEGIN
	UPDATE invocations
	SET payload = CASE WHEN text_len <= 65536 THEN NEW.event::text::json END,
	    payload_truncated = text_len > 65536
	WHERE id = NEW.invocation_id AND payload IS NULL AND NOT payload_truncated;
	RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER jobs_payload
	AFTER INSERT OR UPDATE OF invocation_id ON jobs
	FOR EACH ROW EXECUTE FUNCTION zmesh_job_payload();
