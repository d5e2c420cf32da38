-- Database leases (SPEC §10–§11): at most one holder of a named job (a sector's cycle, the periodic verifier,
-- the checkpoint issuer) across all processes and replicas.
CREATE TABLE leases (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    expires_us  INTEGER NOT NULL,
    acquired_us INTEGER NOT NULL
);
