-- Several routes may read one topic: a record one route refuses is
-- dead-lettered for that route while the others write it, so a dead letter
-- names its route, and one record can have a dead letter per route. Dead
-- letters from before were written by the topic's only route, whose default
-- name is its table's full name (target_table).
ALTER TABLE {schema}.dead_letters ADD COLUMN route text;
UPDATE {schema}.dead_letters SET route = target_table;
ALTER TABLE {schema}.dead_letters ALTER COLUMN route SET NOT NULL;
ALTER TABLE {schema}.dead_letters
    DROP CONSTRAINT dead_letters_group_id_topic_partition_offset_key;
ALTER TABLE {schema}.dead_letters
    ADD CONSTRAINT dead_letters_record_route_key
    UNIQUE (group_id, topic, partition, "offset", route);
