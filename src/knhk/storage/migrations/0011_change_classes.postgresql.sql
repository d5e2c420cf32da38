-- Change classes (SPEC §7): each proposal's class and why (standard, normal, major, emergency), and the
-- post-hoc review an emergency promotion owes (due time, reviewer, verdict, overdue alert).
CREATE TABLE proposal_classes (
    proposal_id  TEXT    PRIMARY KEY REFERENCES proposals (id),
    change_class TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    updated_us   BIGINT  NOT NULL
);

CREATE TABLE proposal_reviews (
    proposal_id   TEXT    PRIMARY KEY REFERENCES proposals (id),
    operator      TEXT    NOT NULL,
    justification TEXT    NOT NULL,
    promoted_us   BIGINT  NOT NULL,
    due_us        BIGINT  NOT NULL,
    reviewer      TEXT,
    verdict       TEXT,
    comment       TEXT,
    reviewed_us   BIGINT,
    alerted_us    BIGINT
);
CREATE INDEX proposal_reviews_due ON proposal_reviews (due_us);
