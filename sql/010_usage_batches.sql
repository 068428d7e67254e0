-- 010_usage_batches.sql: a node counts invocations in memory while a project
-- is far from its monthly cap (supervisor/usage.h) and adds them here in one
-- statement for many projects. They were admitted already: no cap is
-- checked. p_counts is a JSON array of {project_id, n}, one element per
-- project; projects deleted meanwhile are skipped. Returns each project's
-- new count for the current month.
CREATE OR REPLACE FUNCTION zmesh_add_invocations(p_counts json)
RETURNS TABLE (project_id uuid, invocations bigint)
LANGUAGE sql
AS $$
	INSERT INTO usage_counters AS u (project_id, month, invocations)
	SELECT x.project_id, date_trunc('month', now() AT TIME ZONE 'UTC')::date, x.n
	FROM json_to_recordset(p_counts) AS x(project_id uuid, n bigint)
	WHERE x.n > 0 AND EXISTS (SELECT 1 FROM projects p WHERE p.id = x.project_id)
	ON CONFLICT (project_id, month)
	DO UPDATE SET invocations = u.invocations + excluded.invocations
	RETURNING u.project_id, u.invocations
$$;
