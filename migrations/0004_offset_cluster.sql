-- Offsets know their cluster: an offset means something only on the Kafka
-- cluster it was read from (MirrorMaker 2 gives the mirrored records other
-- offsets). `cluster_id` is the cluster the stored offset belongs to: a
-- worker that finds another cluster's id halts the partition until
-- `sluice offsets set` moves it. Rows from before adopt the cluster of
-- their next claim (logged). `last_record_at` is the Kafka timestamp of the
-- last record written, so that `sluice offsets set --to translate` can
-- find the same place in another cluster's copy of the log.
ALTER TABLE {schema}.offsets ADD COLUMN cluster_id text;
ALTER TABLE {schema}.offsets ADD COLUMN last_record_at timestamptz;
