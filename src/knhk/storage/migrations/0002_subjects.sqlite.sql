-- Subjects (SPEC §9): immutable rows carry a pseudonym; the identity lives only here, encrypted under a
-- per-subject key. Erasure deletes both rows (crypto-shredding).
CREATE TABLE subjects (
    pseudonym   TEXT    PRIMARY KEY,
    blind_index TEXT    NOT NULL UNIQUE,
    identity_ct BLOB    NOT NULL,
    created_us  INTEGER NOT NULL
);
CREATE TABLE subject_keys (
    pseudonym TEXT PRIMARY KEY REFERENCES subjects (pseudonym) ON DELETE CASCADE,
    key       BLOB NOT NULL
);
CREATE TABLE subject_erasures (
    pseudonym TEXT    PRIMARY KEY,
    erased_us INTEGER NOT NULL
);
