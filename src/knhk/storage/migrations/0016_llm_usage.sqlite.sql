-- The LLM proposer's use of its endpoint (SPEC §5), shared by every process of the installation: one row per
-- admitted call (kind 'request', the tokens it may need reserved) and one per read answer (kind 'answer', the
-- tokens actually spent minus those reserved). Append-only; the rate limit and the token budget count the
-- rows of the last hour.
CREATE TABLE llm_usage (
    id     INTEGER PRIMARY KEY,
    at_us  INTEGER NOT NULL,
    kind   TEXT    NOT NULL CHECK (kind IN ('request', 'answer')),
    tokens INTEGER NOT NULL
);
CREATE INDEX llm_usage_at ON llm_usage (at_us);
