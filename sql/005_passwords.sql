-- 005_passwords.sql: when a user's password last changed (NULL: never since
-- the account was made). Session tokens signed before that second are
-- refused (api_call.c), so changing or resetting a password ends every
-- session that knew the old one.
ALTER TABLE users ADD COLUMN IF NOT EXISTS password_changed_at timestamptz;
