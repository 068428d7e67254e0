-- 003_events.sql: the job queue every non-synchronous way of running a
-- function goes through (async invocations, schedules, webhooks, and later
-- database changes and custom events), the triggers that feed it, and what
-- is left of jobs that failed for good (dead letters).
--
-- Several zmeshd nodes share these tables; every rule that must hold across
-- nodes (one fire per scheduled time, one job per idempotency key, one
-- delivery per webhook id) is a constraint here, not a check in a node.

-- How a function's queued events are retried (Lambda's defaults): attempts
-- after the first, the oldest an event may be and still start, and a
-- function of the same project that receives what failed for good.
ALTER TABLE functions ADD COLUMN IF NOT EXISTS retries integer NOT NULL DEFAULT 2;
ALTER TABLE functions ADD COLUMN IF NOT EXISTS max_event_age_s integer NOT NULL DEFAULT 21600;
ALTER TABLE functions ADD COLUMN IF NOT EXISTS on_failure text;
ALTER TABLE functions DROP CONSTRAINT IF EXISTS functions_retries_range;
ALTER TABLE functions ADD CONSTRAINT functions_retries_range CHECK (retries BETWEEN 0 AND 10);
ALTER TABLE functions DROP CONSTRAINT IF EXISTS functions_max_event_age_range;
ALTER TABLE functions ADD CONSTRAINT functions_max_event_age_range CHECK (max_event_age_s BETWEEN 60 AND 21600);
ALTER TABLE functions DROP CONSTRAINT IF EXISTS functions_on_failure_shape;
ALTER TABLE functions ADD CONSTRAINT functions_on_failure_shape
	CHECK (on_failure IS NULL OR on_failure ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$');

-- An invocation record now also stands for a queued attempt: queued when
-- the job is committed, running once a worker holds it, then its outcome;
-- the first attempt's record ends "dead" when every retry failed.
ALTER TABLE invocations ADD COLUMN IF NOT EXISTS trigger_id uuid;
ALTER TABLE invocations ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 1;
-- How long a queued attempt waited between being due and a worker taking
-- it (the queue's own latency).
ALTER TABLE invocations ADD COLUMN IF NOT EXISTS queue_ms double precision;
ALTER TABLE invocations DROP CONSTRAINT IF EXISTS invocations_status;
ALTER TABLE invocations ADD CONSTRAINT invocations_status
	CHECK (status IN ('queued', 'running', 'success', 'error', 'timeout', 'rejected', 'dead'));

-- One resource for every way an event runs a function. event_type is cron,
-- webhook, cdc.<OP>.<table> or custom.<name>; config is the type's own
-- (validated by the API); conditions a JSON array of {field, op, value}, all
-- of which must hold. A webhook's secret (and its predecessor during a
-- rotation, until previous_secret_until) is kept in clear: verifying an HMAC
-- needs it, and only the cluster's superuser reaches this database.
CREATE TABLE IF NOT EXISTS triggers (
	id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	project_id            uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	function_id           uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
	event_type            text NOT NULL,
	config                jsonb NOT NULL DEFAULT '{}',
	conditions            jsonb NOT NULL DEFAULT '[]',
	enabled               boolean NOT NULL DEFAULT true,
	secret                text,
	previous_secret       text,
	previous_secret_until timestamptz,
	created_at            timestamptz NOT NULL DEFAULT now(),
	updated_at            timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT triggers_event_type_shape CHECK (event_type ~ '^(cron|webhook|cdc\.(INSERT|UPDATE|DELETE|\*)\.[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?|custom\.[A-Za-z0-9_.:-]{1,128})$'),
	CONSTRAINT triggers_config_object CHECK (jsonb_typeof(config) = 'object'),
	CONSTRAINT triggers_conditions_array CHECK (jsonb_typeof(conditions) = 'array'),
	CONSTRAINT triggers_secret_len CHECK (secret IS NULL OR length(secret) BETWEEN 16 AND 256)
);
CREATE INDEX IF NOT EXISTS triggers_project_idx ON triggers (project_id, created_at);
CREATE INDEX IF NOT EXISTS triggers_function_idx ON triggers (function_id);
-- The scheduler reads every enabled schedule; custom events look up by type.
CREATE INDEX IF NOT EXISTS triggers_event_type_idx ON triggers (event_type) WHERE enabled;
CREATE OR REPLACE TRIGGER triggers_touch_updated_at
	BEFORE UPDATE ON triggers
	FOR EACH ROW EXECUTE FUNCTION zmesh_touch_updated_at();

-- Schedulers on every node learn of a change at once (polling remains the
-- fallback).
CREATE OR REPLACE FUNCTION zmesh_notify_triggers()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM pg_notify('zmesh_triggers', '');
	RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER triggers_notify
	AFTER INSERT OR UPDATE OR DELETE ON triggers
	FOR EACH STATEMENT EXECUTE FUNCTION zmesh_notify_triggers();

-- The queue. A job is claimable when run_after has passed: a worker that
-- takes one moves run_after (and lease_until) a lease ahead and keeps
-- renewing it while the sandbox runs, so a job whose node died becomes
-- claimable again when its lease lapses, with no sweeper. function_id has no
-- foreign key on purpose: the worker drops the job of a deleted function and
-- logs it. version is the function's version when the event came in;
-- invocation_id the record of the current attempt, first_invocation_id that
-- of the first (the id a caller was given).
CREATE TABLE IF NOT EXISTS jobs (
	id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	project_id          uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	function_id         uuid NOT NULL,
	version             integer NOT NULL,
	event               jsonb NOT NULL DEFAULT 'null',
	trigger             text NOT NULL,
	trigger_id          uuid,
	attempt             integer NOT NULL DEFAULT 1,
	invocation_id       uuid NOT NULL,
	first_invocation_id uuid NOT NULL,
	run_after           timestamptz NOT NULL DEFAULT now(),
	lease_owner         text,
	lease_until         timestamptz,
	lapses              integer NOT NULL DEFAULT 0,
	last_error          jsonb,
	created_at          timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT jobs_trigger_shape CHECK (trigger ~ '^[a-z_]{1,32}$'),
	CONSTRAINT jobs_attempt_range CHECK (attempt >= 1),
	CONSTRAINT jobs_version_range CHECK (version >= 1)
);
CREATE INDEX IF NOT EXISTS jobs_run_after_idx ON jobs (run_after);
-- "Is a tick of this schedule still queued or running?" (overlap: skip).
CREATE INDEX IF NOT EXISTS jobs_trigger_idx ON jobs (trigger_id) WHERE trigger_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_function_idx ON jobs (function_id);

-- Idle workers wake on a commit that adds jobs; they poll all the same.
CREATE OR REPLACE FUNCTION zmesh_notify_jobs()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM pg_notify('zmesh_jobs', '');
	RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER jobs_notify
	AFTER INSERT ON jobs
	FOR EACH STATEMENT EXECUTE FUNCTION zmesh_notify_jobs();

-- Enqueue one event for a function: its queued record and its job, in the
-- caller's statement (and so its transaction). p_version NULL means the
-- function's current version; p_invocation NULL, a new id. Returns the
-- invocation id of the first attempt, or NULL when the function does not
-- exist.
CREATE OR REPLACE FUNCTION zmesh_enqueue(p_function uuid, p_version integer, p_event jsonb, p_trigger text,
                                         p_trigger_id uuid, p_run_after timestamptz DEFAULT now(),
                                         p_invocation uuid DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
AS $$
DECLARE
	f   record;
	inv uuid := coalesce(p_invocation, gen_random_uuid());
BEGIN
	SELECT id, project_id, version INTO f FROM functions WHERE id = p_function;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	INSERT INTO invocations (id, function_id, project_id, version, trigger, trigger_id, attempt, status, started_at)
	VALUES (inv, f.id, f.project_id, coalesce(p_version, f.version), p_trigger, p_trigger_id, 1, 'queued', now());
	INSERT INTO jobs (project_id, function_id, version, event, trigger, trigger_id, invocation_id,
	                  first_invocation_id, run_after)
	VALUES (f.project_id, f.id, coalesce(p_version, f.version), coalesce(p_event, 'null'), p_trigger, p_trigger_id,
	        inv, inv, coalesce(p_run_after, now()));
	RETURN inv;
END
$$;

-- Idempotency-Key of an async invocation: a repeat within 24 h gets the
-- first one's invocation; the payload's hash tells a reuse with another
-- payload. Rows older than a day are swept.
CREATE TABLE IF NOT EXISTS idempotency_keys (
	function_id    uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
	key            text NOT NULL,
	payload_sha256 text NOT NULL,
	invocation_id  uuid NOT NULL,
	created_at     timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (function_id, key),
	CONSTRAINT idempotency_keys_key_len CHECK (length(key) BETWEEN 1 AND 255)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_idx ON idempotency_keys (created_at);

-- What failed for good: listed, retried by hand, and handed to the
-- function's on_failure function where it names one.
CREATE TABLE IF NOT EXISTS dead_letters (
	id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	project_id          uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	function_id         uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
	first_invocation_id uuid NOT NULL,
	event               jsonb NOT NULL DEFAULT 'null',
	trigger             text NOT NULL,
	trigger_id          uuid,
	attempts            integer NOT NULL,
	last_error          jsonb,
	enqueued_at         timestamptz NOT NULL,
	failed_at           timestamptz NOT NULL DEFAULT now(),
	retried_at          timestamptz,
	retry_invocation_id uuid
);
CREATE INDEX IF NOT EXISTS dead_letters_project_idx ON dead_letters (project_id, failed_at DESC);

-- One row per tick of a schedule that some node claimed: the primary key
-- lets exactly one node win, whichever nodes run. skipped says why a claimed
-- tick started nothing (overlap); invocation_id is the job's otherwise.
CREATE TABLE IF NOT EXISTS cron_fires (
	trigger_id     uuid NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
	scheduled_time timestamptz NOT NULL,
	fired_at       timestamptz NOT NULL DEFAULT now(),
	invocation_id  uuid,
	skipped        text,
	PRIMARY KEY (trigger_id, scheduled_time)
);
CREATE INDEX IF NOT EXISTS cron_fires_fired_idx ON cron_fires (fired_at);

-- Webhook deliveries by the sender's id, for 24 h: a replay is answered
-- like the first delivery and runs nothing.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
	trigger_id    uuid NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
	delivery_id   text NOT NULL,
	invocation_id uuid,
	created_at    timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (trigger_id, delivery_id),
	CONSTRAINT webhook_deliveries_id_len CHECK (length(delivery_id) BETWEEN 1 AND 256)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_created_idx ON webhook_deliveries (created_at);
