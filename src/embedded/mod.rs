pub mod kafka;
pub mod pgbouncer;
pub mod postgres;
