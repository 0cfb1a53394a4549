-- Partitions halted by `on_error: stop`: the record they stopped before and
-- why. `sluice check` reports them; a partition's row is removed when a
-- worker claims it again (and re-inserted if it halts again).
CREATE TABLE IF NOT EXISTS {schema}.halts (
    group_id   text        NOT NULL,
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    "offset"   bigint      NOT NULL,
    error      text        NOT NULL,
    sqlstate   text,
    halted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
