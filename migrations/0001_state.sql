-- sluice's own state. `{schema}` is replaced by the configured state_schema
-- (quoted) before this runs; migrations run in one transaction under an
-- advisory lock.

-- The next Kafka offset to write, per consumer group and partition. This row
-- is the source of truth for where a partition resumes (Kafka's committed
-- offsets are advisory). `owner` is the fencing token of the worker that last
-- claimed the partition: a commit only lands while its owner still holds it.
CREATE TABLE IF NOT EXISTS {schema}.offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint,
    owner       uuid        NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Records that could not be decoded or written, with their original bytes and
-- coordinates, written in the same transaction as the batch they belonged to.
CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
    id            bigserial   PRIMARY KEY,
    group_id      text        NOT NULL,
    topic         text        NOT NULL,
    partition     integer     NOT NULL,
    "offset"      bigint      NOT NULL,
    target_table  text        NOT NULL,
    key           bytea,
    value         bytea,
    header_keys   text[]      NOT NULL DEFAULT '{}',
    header_values bytea[]     NOT NULL DEFAULT '{}',
    kafka_timestamp timestamptz,
    error         text        NOT NULL,
    sqlstate      text,
    failed_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_id, topic, partition, "offset")
);
