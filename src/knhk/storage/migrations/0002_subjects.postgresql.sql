-- Subjects (SPEC §9): immutable rows carry a pseudonym; the identity lives only here, encrypted under a
-- per-subject key. Erasure deletes both rows (crypto-shredding).
CREATE TABLE subjects (
    pseudonym   TEXT   PRIMARY KEY,
    blind_index TEXT   NOT NULL UNIQUE,
    identity_ct BYTEA  NOT NULL,
    created_us  BIGINT NOT NULL
);
CREATE TABLE subject_keys (
    pseudonym TEXT  PRIMARY KEY REFERENCES subjects (pseudonym) ON DELETE CASCADE,
    key       BYTEA NOT NULL
);
CREATE TABLE subject_erasures (
    pseudonym TEXT   PRIMARY KEY,
    erased_us BIGINT NOT NULL
);
