-- 008_log_lines.sql: live logs. Every line a function writes is stored here
-- as it comes (supervisor/logstream.c batches them), so that a stream on any
-- node reads them from PostgreSQL (GET .../logs/stream). Kinds:
--   log       one line (stream 'stderr'), or the platform's marker (stream
--             'system') that the invocation's logs were cut at the cap;
--   dropped   lines the node could not queue (line holds their count);
--   end       the invocation finished (status, duration_ms).
-- No foreign keys: a function deleted while a batch is in flight must not
-- fail the batch; the periodic sweep removes rows older than the retention
-- (1 hour by default) and beyond the per-function cap (10000 by default),
-- and records in log_line_horizon how far it deleted for each function, so
-- that a stream resuming before that point is told its gap (a "dropped"
-- event) instead of silently skipping it.
CREATE TABLE IF NOT EXISTS log_lines (
	id            bigserial PRIMARY KEY,
	project_id    uuid        NOT NULL,
	function_id   uuid        NOT NULL,
	invocation_id uuid        NOT NULL,
	ts            timestamptz NOT NULL DEFAULT now(),
	kind          text        NOT NULL DEFAULT 'log',
	stream        text        NOT NULL DEFAULT 'stderr',
	line          text        NOT NULL DEFAULT '',
	status        text,
	duration_ms   double precision,
	CONSTRAINT log_lines_kind CHECK (kind IN ('log', 'dropped', 'end')),
	CONSTRAINT log_lines_stream CHECK (stream IN ('stderr', 'system')),
	CONSTRAINT log_lines_line_size CHECK (octet_length(line) <= 65536)
);

CREATE INDEX IF NOT EXISTS log_lines_function_id_idx ON log_lines (function_id, id);
CREATE INDEX IF NOT EXISTS log_lines_ts_idx ON log_lines (ts);

CREATE TABLE IF NOT EXISTS log_line_horizon (
	function_id     uuid PRIMARY KEY,
	deleted_through bigint NOT NULL
);
