-- The prediction log: one row per (input, model, task, parameters), upserted with a count.
-- Hashes are blake3 (32 bytes); times are Unix milliseconds.
CREATE TABLE predictions (
    input_hash   BLOB    NOT NULL, -- the input (text and pair) as the cache key hashes it
    model        TEXT    NOT NULL,
    task         TEXT    NOT NULL, -- the served task: embed, classify, entities, nli, rerank, ...
    params_hash  BLOB    NOT NULL, -- the operation and its output-affecting parameters
    params       TEXT    NOT NULL, -- the same as JSON: what cache warming recomputes
    revision     TEXT    NOT NULL, -- the model revision that produced `result`
    input_text   TEXT,             -- NULL unless --log-inputs
    input_pair   TEXT,             -- the second text of a pair (NULL for single texts)
    result       BLOB    NOT NULL, -- the result in the cache's binary format
    latency_ms   REAL,             -- compute time of the last computation (NULL: only ever a hit)
    hit_count    INTEGER NOT NULL, -- times served, the first computation included
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    PRIMARY KEY (input_hash, model, task, params_hash)
);

CREATE INDEX predictions_model_hits ON predictions (model, hit_count DESC);
