//! Documented defaults of the configuration (each field's doc comment
//! names its default; docs/configuration.md repeats them).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{ByteSize, Format, LogFormat, StartFrom, WriteMethod};

pub(super) const fn default_start_from() -> StartFrom {
    StartFrom::Earliest
}
pub(super) const fn default_format() -> Format {
    Format::Json
}
pub(super) const fn default_write_method() -> WriteMethod {
    WriteMethod::Copy
}
pub(super) const fn default_log_format() -> LogFormat {
    LogFormat::Text
}
pub(super) const fn default_revoke_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) const fn default_pool_size() -> usize {
    8
}
pub(super) fn default_state_schema() -> String {
    "sluice".to_owned()
}
pub(super) const fn default_true() -> bool {
    true
}
pub(super) const fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) const fn default_max_rows() -> usize {
    5000
}
pub(super) const fn default_max_bytes() -> ByteSize {
    ByteSize(4 * 1024 * 1024)
}
pub(super) const fn default_linger() -> Duration {
    Duration::from_millis(50)
}
pub(super) const fn default_listen() -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9187)
}
pub(super) const fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
pub(super) const fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_level() -> String {
    "info".to_owned()
}
pub(super) const fn default_statement_timeout() -> Duration {
    Duration::from_secs(60)
}
pub(super) const fn default_lock_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) const fn default_tcp_user_timeout() -> Duration {
    Duration::from_secs(30)
}
pub(super) const fn default_unready_after() -> Duration {
    Duration::from_secs(30)
}
pub(super) const fn default_shutdown_grace() -> Duration {
    Duration::from_secs(25)
}
pub(super) const fn default_min_rows_per_second() -> u32 {
    100
}
pub(super) const fn default_adaptive_window() -> Duration {
    Duration::from_secs(1)
}

pub(super) const fn default_max_dead_letter_ratio() -> f64 {
    0.5
}
