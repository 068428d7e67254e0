-- 004_egress.sql: each project's outbound network policy (egress_policy.h):
-- {"mode": "open"|"allowlist"|"none", "allow": [names, *.suffixes, IPs,
-- CIDRs]}. The API validates and normalizes it; the constraint only keeps the
-- shape, so a row never holds what the gateway could not read.
ALTER TABLE projects ADD COLUMN IF NOT EXISTS egress jsonb NOT NULL DEFAULT '{"mode": "open", "allow": []}';
ALTER TABLE projects DROP CONSTRAINT IF EXISTS projects_egress_shape;
ALTER TABLE projects ADD CONSTRAINT projects_egress_shape
	CHECK (jsonb_typeof(egress) = 'object'
	       AND egress->>'mode' IN ('open', 'allowlist', 'none')
	       AND jsonb_typeof(egress->'allow') = 'array'
	       AND jsonb_array_length(egress->'allow') <= 100);
