//! `postgres.statement_timeout` and `lock_timeout` become server settings
//! (`SET LOCAL`, in milliseconds) at the start of every batch: a value
//! beyond what Postgres takes is refused here, before anything connects.

use super::super::{PostgresConfig, Problem};

/// Postgres' largest value for its millisecond timeouts (an `int`):
/// about 24.8 days.
const MAX_TIMEOUT_MS: u128 = i32::MAX as u128;

pub(super) fn check(pg: &PostgresConfig, problems: &mut Vec<Problem>) {
    for (field, value) in [
        ("postgres.statement_timeout", pg.statement_timeout),
        ("postgres.lock_timeout", pg.lock_timeout),
    ] {
        let ms = value.as_millis();
        if ms > MAX_TIMEOUT_MS {
            problems.push(Problem::new(
                field,
                format!(
                    "is {ms}ms, more than Postgres takes (at most {MAX_TIMEOUT_MS}ms, \
                     596h31m23s647ms); set a shorter duration like \"60s\""
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;

    fn config(statement: &str, lock: &str) -> Result<Config, String> {
        let yaml = format!(
            "kafka: {{ brokers: \"k:9092\", group_id: g }}\npostgres:\n  url: \"postgres://db/app\"\n  statement_timeout: {statement}\n  lock_timeout: {lock}\nroutes: [{{ topic: t, table: t, columns: {{ c: /c }} }}]\n"
        );
        Config::from_yaml(&yaml, |_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn timeouts_beyond_postgres_int_milliseconds_are_refused() {
        // 596h is 2,145,600,000 ms: Postgres takes it.
        let ok = config("596h", "596h31m23s647ms").expect("at the limit");
        assert_eq!(
            ok.postgres.statement_timeout,
            Duration::from_secs(596 * 3600)
        );
        let error = config("600h", "10s").expect_err("25 days");
        assert!(
            error.contains("postgres.statement_timeout: is 2160000000ms")
                && error.contains("at most 2147483647ms"),
            "{error}"
        );
        let error = config("60s", "596h31m23s648ms").expect_err("one past");
        assert!(
            error.contains("postgres.lock_timeout: is 2147483648ms"),
            "{error}"
        );
    }
}
