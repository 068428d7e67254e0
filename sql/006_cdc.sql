-- 006_cdc.sql: database changes as events. A cdc trigger's changes are
-- captured in the project's own database (an outbox that zmeshd installs;
-- see supervisor/cdc.c) and moved into the job queue here by one node per
-- project database at a time.
--
-- What this file adds to the queue: jobs of one order key run one at a time,
-- in the order they were queued. The changes of one row reach a trigger's
-- function in commit order: its insert before its update, its update before
-- its delete, even while an earlier one is being retried.

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS order_key text;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS seq bigserial;
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_order_key_len;
ALTER TABLE jobs ADD CONSTRAINT jobs_order_key_len CHECK (order_key IS NULL OR length(order_key) <= 8192);
-- "Is an earlier job of this key still queued or running?"
CREATE INDEX IF NOT EXISTS jobs_order_idx ON jobs (order_key, seq) WHERE order_key IS NOT NULL;

-- zmesh_enqueue (003) with an order key.
DROP FUNCTION IF EXISTS zmesh_enqueue(uuid, integer, jsonb, text, uuid, timestamptz, uuid);
CREATE OR REPLACE FUNCTION zmesh_enqueue(p_function uuid, p_version integer, p_event jsonb, p_trigger text,
                                         p_trigger_id uuid, p_run_after timestamptz DEFAULT now(),
                                         p_invocation uuid DEFAULT NULL, p_order_key text DEFAULT NULL)
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
	                  first_invocation_id, run_after, order_key)
	VALUES (f.project_id, f.id, coalesce(p_version, f.version), coalesce(p_event, 'null'), p_trigger, p_trigger_id,
	        inv, inv, coalesce(p_run_after, now()), p_order_key);
	RETURN inv;
END
$$;

-- Enqueue a batch in its order (a JSON array of {function_id, trigger,
-- trigger_id, event, order_key}), each as zmesh_enqueue does, keyed by a
-- digest of its order_key (a row's primary key may be long; a collision only
-- orders two keys' jobs together); items whose function is gone are
-- skipped. Returns how many were queued.
CREATE OR REPLACE FUNCTION zmesh_enqueue_batch(p_items jsonb)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
	x record;
	n integer := 0;
BEGIN
	FOR x IN SELECT e FROM jsonb_array_elements(p_items) WITH ORDINALITY AS a(e, i) ORDER BY i LOOP
		IF zmesh_enqueue((x.e->>'function_id')::uuid, NULL, x.e->'event', x.e->>'trigger',
		                 (x.e->>'trigger_id')::uuid, now(), NULL, md5(x.e->>'order_key')) IS NOT NULL THEN
			n := n + 1;
		END IF;
	END LOOP;
	RETURN n;
END
$$;
