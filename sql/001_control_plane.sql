-- 001_control_plane.sql: the control plane's schema.
--
-- Applied once by db_migrate(), inside its transaction and under its advisory
-- lock; it must not contain BEGIN/COMMIT. It is also safe to run by hand on a
-- database that already has it (IF NOT EXISTS, OR REPLACE throughout).
--
-- The constraints repeat the API's validation on purpose: several zmeshd
-- nodes, tools and operators write here, and a row that breaks an invariant
-- (an upper-case email, a slug that looks like an id, an identifier that is
-- later spliced into CREATE DATABASE) must fail at the source.

-- Emails are stored lower-case (citext is not assumed to be installed), so a
-- plain unique constraint makes them unique without regard to case.
CREATE TABLE IF NOT EXISTS users (
	id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	email         text NOT NULL,
	password_hash text NOT NULL,
	is_admin      boolean NOT NULL DEFAULT false,
	created_at    timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT users_email_key UNIQUE (email),
	CONSTRAINT users_email_lower CHECK (email = lower(email)),
	CONSTRAINT users_email_shape CHECK (length(email) BETWEEN 3 AND 254 AND position('@' IN email) > 1),
	CONSTRAINT users_password_hash_len CHECK (length(password_hash) BETWEEN 1 AND 1024)
);

-- db_name and db_role are spliced into CREATE DATABASE / CREATE ROLE, which
-- take no bound parameters: they are restricted to plain lower-case
-- identifiers, and never a built-in role. db_password is kept in clear
-- because every invocation hands it to the sandbox in the project's DSN; the
-- control-plane database is reachable only by the cluster's superuser.
-- monthly_cap and concurrency are NULL when the tier's value applies.
CREATE TABLE IF NOT EXISTS projects (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name        text NOT NULL,
	slug        text NOT NULL,
	tier        text NOT NULL DEFAULT 'free',
	monthly_cap integer,
	concurrency integer,
	db_name     text NOT NULL,
	db_role     text NOT NULL,
	db_password text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT projects_slug_key UNIQUE (slug),
	CONSTRAINT projects_db_name_key UNIQUE (db_name),
	CONSTRAINT projects_db_role_key UNIQUE (db_role),
	CONSTRAINT projects_name_len CHECK (length(name) BETWEEN 1 AND 128),
	CONSTRAINT projects_slug_shape CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	CONSTRAINT projects_tier_shape CHECK (tier ~ '^[a-z0-9_-]{1,32}$'),
	CONSTRAINT projects_monthly_cap_range CHECK (monthly_cap IS NULL OR monthly_cap >= 0),
	CONSTRAINT projects_concurrency_range CHECK (concurrency IS NULL OR concurrency > 0),
	CONSTRAINT projects_db_name_shape CHECK (db_name ~ '^[a-z_][a-z0-9_]{0,62}$'
	                                         AND db_name NOT IN ('postgres', 'template0', 'template1')),
	CONSTRAINT projects_db_role_shape CHECK (db_role ~ '^[a-z_][a-z0-9_]{0,62}$'
	                                         AND db_role <> 'postgres' AND db_role !~ '^pg_'),
	CONSTRAINT projects_db_password_len CHECK (length(db_password) BETWEEN 16 AND 256)
);

CREATE TABLE IF NOT EXISTS project_members (
	project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	role       text NOT NULL DEFAULT 'member',
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (project_id, user_id),
	CONSTRAINT project_members_role CHECK (role IN ('owner', 'member'))
);
-- "The caller's projects" is the most frequent question; deleting a user also
-- looks its memberships up by user.
CREATE INDEX IF NOT EXISTS project_members_user_idx ON project_members (user_id);

-- Only a hash of the key is stored (the key itself is shown once, at
-- creation); the prefix lets a person recognise a key in a listing.
CREATE TABLE IF NOT EXISTS api_keys (
	id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	project_id   uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	name         text NOT NULL,
	prefix       text NOT NULL,
	key_hash     text NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	last_used_at timestamptz,
	CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
	CONSTRAINT api_keys_name_len CHECK (length(name) BETWEEN 1 AND 128),
	CONSTRAINT api_keys_prefix_len CHECK (length(prefix) BETWEEN 4 AND 16),
	CONSTRAINT api_keys_key_hash_shape CHECK (key_hash ~ '^[0-9a-f]{64}$')
);
CREATE INDEX IF NOT EXISTS api_keys_project_idx ON api_keys (project_id);

-- {fid} in the API is an id or a slug: a slug may never look like a uuid, so
-- a path segment names at most one function. Slugs are unique per project;
-- the public route /api/functions/{slug} is scoped by the API key's project.
-- env holds the function's variables as an object of strings (values are
-- write-only in the API, never returned). version is the number of the
-- current state; function_versions holds the states before it.
CREATE TABLE IF NOT EXISTS functions (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	name        text NOT NULL,
	slug        text NOT NULL,
	language    text NOT NULL,
	entry_point text NOT NULL DEFAULT 'handler',
	code        text NOT NULL,
	env         jsonb NOT NULL DEFAULT '{}',
	timeout_ms  integer NOT NULL DEFAULT 10000,
	memory_mb   integer NOT NULL DEFAULT 256,
	status      text NOT NULL DEFAULT 'active',
	version     integer NOT NULL DEFAULT 1,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT functions_project_slug_key UNIQUE (project_id, slug),
	CONSTRAINT functions_name_len CHECK (length(name) BETWEEN 1 AND 128),
	CONSTRAINT functions_slug_shape CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	CONSTRAINT functions_slug_not_uuid CHECK (slug !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'),
	CONSTRAINT functions_language CHECK (language IN ('javascript', 'python')),
	CONSTRAINT functions_entry_point_len CHECK (length(entry_point) BETWEEN 1 AND 128),
	CONSTRAINT functions_env_strings CHECK (jsonb_typeof(env) = 'object'
	                                        AND NOT jsonb_path_exists(env, '$.* ? (@.type() != "string")')),
	CONSTRAINT functions_timeout_range CHECK (timeout_ms > 0),
	CONSTRAINT functions_memory_range CHECK (memory_mb > 0),
	CONSTRAINT functions_status CHECK (status IN ('active', 'disabled')),
	CONSTRAINT functions_version_range CHECK (version >= 1)
);

-- A snapshot of a function as it was before a change (PATCH or rollback), so
-- that any earlier state, including the one a rollback replaced, can return.
CREATE TABLE IF NOT EXISTS function_versions (
	function_id uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
	version     integer NOT NULL,
	code        text NOT NULL,
	entry_point text NOT NULL,
	env         jsonb NOT NULL DEFAULT '{}',
	timeout_ms  integer NOT NULL,
	memory_mb   integer NOT NULL,
	language    text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (function_id, version),
	CONSTRAINT function_versions_version_range CHECK (version >= 1),
	CONSTRAINT function_versions_language CHECK (language IN ('javascript', 'python')),
	CONSTRAINT function_versions_env_strings CHECK (jsonb_typeof(env) = 'object'
	                                        AND NOT jsonb_path_exists(env, '$.* ? (@.type() != "string")'))
);

-- One row per invocation, whatever its outcome (written in batches, off the
-- request's path). status is the envelope's: success, error, timeout, or
-- rejected when limits refused it before any sandbox ran (start is NULL
-- then); error carries {code, message, ...} for anything but success.
CREATE TABLE IF NOT EXISTS invocations (
	id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	function_id    uuid NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
	project_id     uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	version        integer NOT NULL,
	trigger        text NOT NULL,
	start          text,
	status         text NOT NULL,
	started_at     timestamptz NOT NULL DEFAULT now(),
	duration_ms    double precision,
	cpu_ms         double precision,
	memory_bytes   bigint,
	result_excerpt text,
	logs           text,
	logs_truncated boolean NOT NULL DEFAULT false,
	error          jsonb,
	CONSTRAINT invocations_trigger_shape CHECK (trigger ~ '^[a-z_]{1,32}$'),
	CONSTRAINT invocations_start CHECK (start IN ('warm', 'cold')),
	CONSTRAINT invocations_status CHECK (status IN ('success', 'error', 'timeout', 'rejected')),
	CONSTRAINT invocations_error_object CHECK (error IS NULL OR jsonb_typeof(error) = 'object'),
	CONSTRAINT invocations_metrics_range CHECK (coalesce(duration_ms, 0) >= 0 AND coalesce(cpu_ms, 0) >= 0
	                                            AND coalesce(memory_bytes, 0) >= 0)
);
-- Listing is newest first per function, paginated by (started_at, id) so
-- that equal timestamps still page deterministically.
CREATE INDEX IF NOT EXISTS invocations_function_started_idx ON invocations (function_id, started_at DESC, id DESC);
-- Deleting a project cascades here; without this it scans every record.
CREATE INDEX IF NOT EXISTS invocations_project_idx ON invocations (project_id);

-- updated_at follows every change, whoever makes it.
CREATE OR REPLACE FUNCTION zmesh_touch_updated_at()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
	NEW.updated_at := now();
	RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER functions_touch_updated_at
	BEFORE UPDATE ON functions
	FOR EACH ROW EXECUTE FUNCTION zmesh_touch_updated_at();

-- month is the first day of a UTC calendar month.
CREATE TABLE IF NOT EXISTS usage_counters (
	project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	month       date NOT NULL,
	invocations bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (project_id, month),
	CONSTRAINT usage_counters_month_first CHECK (extract(day FROM month) = 1),
	CONSTRAINT usage_counters_invocations_range CHECK (invocations >= 0)
);

-- Count one invocation against a monthly cap, atomically: the row lock taken
-- by ON CONFLICT DO UPDATE serialises concurrent callers, from any number of
-- zmeshd nodes, so the count never passes the cap. Returns the new count, or
-- NULL when the cap is already reached (nothing is counted then). A NULL cap
-- means no cap: the invocation is counted all the same.
CREATE OR REPLACE FUNCTION zmesh_take_invocation(p_project uuid, p_cap bigint)
RETURNS bigint
LANGUAGE sql
AS $$
	INSERT INTO usage_counters AS u (project_id, month, invocations)
	SELECT p_project, date_trunc('month', now() AT TIME ZONE 'UTC')::date, 1
	WHERE p_cap IS NULL OR p_cap > 0
	ON CONFLICT (project_id, month)
	DO UPDATE SET invocations = u.invocations + 1 WHERE p_cap IS NULL OR u.invocations < p_cap
	RETURNING invocations
$$;
