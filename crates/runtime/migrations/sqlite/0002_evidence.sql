-- The evidence corpus of the verification pipeline: documents, split into passages, each with
-- its embedding. The vector index is rebuilt from `evidence_passages` at start.
CREATE TABLE evidence_documents (
    id         TEXT    PRIMARY KEY, -- the client's id, or one nlpd made (blake3 of the text)
    source     TEXT,                -- where the document comes from (free text, optional)
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL     -- Unix milliseconds
);

CREATE TABLE evidence_passages (
    document_id TEXT    NOT NULL,
    position    INTEGER NOT NULL, -- 0, 1, 2, ... in document order
    start_char  INTEGER NOT NULL, -- the passage is the document's text[start_char, end_char)
    end_char    INTEGER NOT NULL, -- (Unicode scalar values, not bytes)
    text        TEXT    NOT NULL,
    tokens      INTEGER NOT NULL, -- word pieces, by the embedding model's tokenizer
    model       TEXT    NOT NULL, -- the embedding model and its revision: a passage embedded
    revision    TEXT    NOT NULL, -- by another one is embedded again at start
    embedding   BLOB    NOT NULL, -- f32 little endian, L2-normalized
    PRIMARY KEY (document_id, position)
);
