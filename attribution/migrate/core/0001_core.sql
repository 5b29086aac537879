-- Portable core schema (PostgreSQL and CockroachDB). Every table's primary key is the
-- event id or the natural key, so replaying an event is a no-op (INSERT ... ON CONFLICT DO NOTHING).

CREATE TABLE IF NOT EXISTS campaigns (
    id         TEXT PRIMARY KEY,
    first_seen TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS links (
    code     TEXT PRIMARY KEY,
    id       TEXT NOT NULL,
    at       TIMESTAMPTZ NOT NULL,
    node     TEXT NOT NULL,
    region   TEXT NOT NULL,
    campaign TEXT NOT NULL,
    inviter  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS clicks (
    id       TEXT PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL,
    node     TEXT NOT NULL,
    region   TEXT NOT NULL,
    campaign TEXT NOT NULL,
    code     TEXT NOT NULL,
    inviter  TEXT NOT NULL,
    ip       TEXT NOT NULL,
    country  TEXT NOT NULL,
    ua       TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS registrations (
    id              TEXT PRIMARY KEY,
    registration_id TEXT NOT NULL UNIQUE,
    at              TIMESTAMPTZ NOT NULL,
    node            TEXT NOT NULL,
    region          TEXT NOT NULL,
    campaign        TEXT NOT NULL,
    inviter         TEXT NOT NULL,
    invitee         TEXT NOT NULL,
    device          TEXT NOT NULL,
    ip              TEXT NOT NULL,
    country         TEXT NOT NULL
);

-- Decisions: id is derived from the registration and the raft index of the decision
-- ("d-<registration>-<index>"). A registration has one decision, or two when it was held and
-- an admin then released or rejected it: the latest (by at) is the one that counts.
CREATE TABLE IF NOT EXISTS decisions (
    id              TEXT PRIMARY KEY,
    registration_id TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    node            TEXT NOT NULL,
    region          TEXT NOT NULL,
    campaign        TEXT NOT NULL,
    inviter         TEXT NOT NULL,
    invitee         TEXT NOT NULL,
    status          TEXT NOT NULL,
    reason          TEXT NOT NULL
);

-- Grants: id is derived ("g-<registration>-<index>-<n>"); one grant per role and registration.
CREATE TABLE IF NOT EXISTS grants (
    id              TEXT PRIMARY KEY,
    registration_id TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    node            TEXT NOT NULL,
    region          TEXT NOT NULL,
    campaign        TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    role            TEXT NOT NULL,
    value           BIGINT NOT NULL,
    UNIQUE (registration_id, role)
);

CREATE INDEX IF NOT EXISTS clicks_campaign_region ON clicks (campaign, region);
CREATE INDEX IF NOT EXISTS clicks_campaign_country ON clicks (campaign, country);
CREATE INDEX IF NOT EXISTS registrations_campaign ON registrations (campaign, region, country);
CREATE INDEX IF NOT EXISTS decisions_campaign_status ON decisions (campaign, status);
CREATE INDEX IF NOT EXISTS decisions_registration ON decisions (registration_id, at);
CREATE INDEX IF NOT EXISTS grants_campaign_user ON grants (campaign, user_id);
