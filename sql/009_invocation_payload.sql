-- 009_invocation_payload.sql: an invocation's record keeps its payload, so
-- that a past invocation can be inspected and run again with the same input.
-- payload is the compact JSON text of the payload when it is at most 64 KiB
-- (65536 bytes); a longer one is not kept at all (payload NULL) and
-- payload_truncated says so. Records written before this migration, and
-- queued attempts, have payload NULL and payload_truncated false. Payloads
-- live as long as their records (they go with their function or project),
-- and every member of the project can read them.
ALTER TABLE invocations
	ADD COLUMN IF NOT EXISTS payload           json,
	ADD COLUMN IF NOT EXISTS payload_truncated boolean NOT NULL DEFAULT false;
ALTER TABLE invocations DROP CONSTRAINT IF EXISTS invocations_payload_bound;
ALTER TABLE invocations ADD CONSTRAINT invocations_payload_bound
	CHECK (payload IS NULL OR octet_length(payload::text) <= 65536);
