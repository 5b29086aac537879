-- A registration can have several grants of one role: the ledger gives one grant of role
-- "task" per task the registration unlocks. 0001's UNIQUE (registration_id, role) made the
-- second one a conflict, which the replicator's ON CONFLICT DO NOTHING then dropped. The
-- grant's id ("g-<registration>-<index>-<n>", the primary key) is the idempotency key; a
-- plain index keeps lookups by registration and role.
-- CockroachDB drops a UNIQUE constraint with DROP INDEX ... CASCADE: core_crdb/ holds that
-- variant of this migration.
ALTER TABLE grants DROP CONSTRAINT IF EXISTS grants_registration_id_role_key;
CREATE INDEX IF NOT EXISTS grants_registration_role ON grants (registration_id, role);
