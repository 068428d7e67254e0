-- 002_function_uses_db.sql: whether a function's code uses zmesh.db,
-- decided once when the code is saved (the warm pool hands such functions a
-- sandbox with the database driver loaded), kept with every version so that
-- a rollback restores it with the code.
ALTER TABLE functions ADD COLUMN IF NOT EXISTS uses_db boolean NOT NULL DEFAULT false;
ALTER TABLE function_versions ADD COLUMN IF NOT EXISTS uses_db boolean NOT NULL DEFAULT false;

-- Rows saved before this column existed: the same test the daemon applies
-- (a name "db" followed by a property access).
UPDATE functions SET uses_db = code ~ '(^|[^A-Za-z0-9_$])db[ \t\r\n]*(\.|\[|\?\.)' WHERE NOT uses_db;
UPDATE function_versions SET uses_db = code ~ '(^|[^A-Za-z0-9_$])db[ \t\r\n]*(\.|\[|\?\.)' WHERE NOT uses_db;
