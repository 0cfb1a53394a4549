use super::*;

#[test]
fn the_copy_header_is_the_binary_format_signature_flags_and_extension() {
    // 11-byte signature, i32 flags, i32 header extension length.
    assert_eq!(COPY_HEADER.len(), 19);
    assert_eq!(&COPY_HEADER[..11], b"PGCOPY\n\xff\r\n\0");
    assert!(COPY_HEADER[11..].iter().all(|&b| b == 0));
}

#[test]
fn values_statement_shape() {
    assert_eq!(
        values_sql(
            "INSERT INTO t (a, b) VALUES ",
            " ON CONFLICT DO NOTHING",
            2,
            2
        ),
        "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
    );
    assert_eq!(
        values_sql("DELETE FROM t WHERE (k) IN (", ")", 2, 1),
        "DELETE FROM t WHERE (k) IN (($1), ($2))"
    );
}

#[test]
fn chunks_stay_under_the_parameter_limit() {
    assert_eq!(chunk_rows(20, 5_000), 3_276);
    assert!(chunk_rows(20, 5_000) * 20 <= MAX_PARAMS);
    assert_eq!(chunk_rows(3, 100), 100);
    assert_eq!(chunk_rows(70_000, 100), 1);
}

#[test]
fn stage_names_differ_by_target_columns_and_purpose() {
    assert_ne!(
        stage_name("stage", "\"a\".\"t\"", "c"),
        stage_name("stage", "\"b\".\"t\"", "c")
    );
    assert_ne!(stage_name("stage", "t", "c"), stage_name("del", "t", "c"));
    // Hardening #11: two routes into one table with other columns.
    assert_ne!(
        stage_name("stage", "t", "\"a\", \"b\""),
        stage_name("stage", "t", "\"a\", \"c\"")
    );
}
