pub mod kafka;
pub mod postgres;
