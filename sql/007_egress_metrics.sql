-- 007_egress_metrics.sql: what each invocation did through the egress
-- gateway: requests made (refused ones included), bytes relayed both ways,
-- requests refused.
ALTER TABLE invocations
	ADD COLUMN IF NOT EXISTS egress_requests integer NOT NULL DEFAULT 0 CHECK (egress_requests >= 0),
	ADD COLUMN IF NOT EXISTS egress_bytes    bigint  NOT NULL DEFAULT 0 CHECK (egress_bytes >= 0),
	ADD COLUMN IF NOT EXISTS egress_refused  integer NOT NULL DEFAULT 0 CHECK (egress_refused >= 0);
