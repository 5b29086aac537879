-- CockroachDB variant of core/0002_grants_several_per_role.sql (same version, applied
-- instead of it on CockroachDB): there a UNIQUE constraint made in CREATE TABLE is dropped
-- with its index, DROP INDEX ... CASCADE, not with ALTER TABLE ... DROP CONSTRAINT.
DROP INDEX IF EXISTS grants@grants_registration_id_role_key CASCADE;
CREATE INDEX IF NOT EXISTS grants_registration_role ON grants (registration_id, role);
