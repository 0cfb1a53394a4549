//! A Kafka record copied out of librdkafka, as it waits in a batch.
//!
//! Batches hold records undecoded: decoding happens while the batch is
//! written, so memory holds one copy of each record, a retry or bisection
//! simply decodes again, and a dead letter always has the original bytes.
//!
//! A worker copies its records' keys and values into shared buffers
//! ([`Arena`]) rather than into a `Vec` each: a profile of the drain found
//! the two allocations and frees per record at several per cent of the
//! sink's CPU.

use std::ffi::CStr;

use bytes::{Bytes, BytesMut};
use rdkafka::bindings as rdsys;
use rdkafka::message::BorrowedMessage;

use crate::kafka::burst::Native;

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub offset: i64,
    /// Kafka timestamp in epoch milliseconds, when the record has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Header names as the bytes Kafka carries: the protocol does not
    /// promise UTF-8, so a name is never assumed to be text.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Record {
    /// The message copied out, its key and value in buffers of their own.
    pub fn from_message(msg: &BorrowedMessage<'_>) -> Record {
        Record::from_message_in(msg, &mut Arena::default())
    }

    /// The message copied out, its key and value into `arena`.
    pub fn from_message_in(msg: &BorrowedMessage<'_>, arena: &mut Arena) -> Record {
        // SAFETY: `msg` keeps the native message alive for the call.
        unsafe { Record::from_native_ptr(msg.ptr(), arena) }
    }

    /// A message taken in a burst (`kafka::burst`), copied out likewise.
    pub fn from_native_in(msg: &Native, arena: &mut Arena) -> Record {
        // SAFETY: `msg` owns the native message until it is dropped.
        unsafe { Record::from_native_ptr(msg.ptr(), arena) }
    }

    /// Reads the native message as rust-rdkafka's `Message` accessors do
    /// (a null key or payload is none; a timestamp of -1 or of no type is
    /// none), so both ways of receiving make the same record.
    ///
    /// # Safety
    /// `msg` points at a live message that is not an error.
    unsafe fn from_native_ptr(msg: *const rdsys::rd_kafka_message_t, arena: &mut Arena) -> Record {
        let m = &*msg;
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        let timestamp = rdsys::rd_kafka_message_timestamp(msg, &mut kind);
        let available = timestamp != -1
            && kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        let bytes = |ptr: *const std::os::raw::c_void, len: usize, arena: &mut Arena| {
            (!ptr.is_null()).then(|| arena.copy(std::slice::from_raw_parts(ptr.cast::<u8>(), len)))
        };
        Record {
            offset: m.offset,
            timestamp_ms: available.then_some(timestamp),
            key: bytes(m.key, m.key_len, arena),
            value: bytes(m.payload, m.len, arena),
            headers: raw_headers(msg),
        }
    }

    /// Bytes this record holds, for the batch's byte limit.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + headers
            + 32
    }

    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Where a worker's records keep their keys and values: slices of shared
/// buffers, one allocation per [`ARENA_CHUNK`] of record bytes instead of
/// two per record. A buffer is freed when the last record holding a slice
/// of it is dropped, so the arena holds about one batch (`max_bytes`) plus
/// one chunk; once a written batch is cleared, [`Arena::restart`] begins
/// the next one at the start of the current buffer.
#[derive(Debug, Default)]
pub struct Arena {
    buf: BytesMut,
}

/// The size of each buffer an [`Arena`] takes (a larger record takes its
/// own size). Below glibc's default `mmap` threshold (128 KiB), so a
/// buffer comes from the heap, not from a fresh mapping whose pages are
/// faulted in one by one.
pub const ARENA_CHUNK: usize = 64 * 1024;

impl Arena {
    /// The previous batch's records are dropped: the next batch starts at
    /// the beginning of the current buffer, which no record holds any
    /// more (when one still does, a new buffer is taken at the next copy).
    pub fn restart(&mut self) {
        if self.buf.capacity() > 0 {
            self.buf.reserve(ARENA_CHUNK);
        }
    }

    /// `bytes`, copied into the arena.
    pub fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.buf.capacity() - self.buf.len() < bytes.len() {
            // In place when no record holds the buffer any more, else a
            // new one (bytes' `reserve`).
            self.buf.reserve(bytes.len().max(ARENA_CHUNK));
        }
        self.buf.extend_from_slice(bytes);
        self.buf.split().freeze()
    }
}

/// A header name as text for the dead-letter table: as it is when it is
/// UTF-8 with no NUL and no backslash, otherwise every byte escaped as
/// `escape_ascii` does (`\xff`, `\\`, `\"`), so no byte is lost and no two
/// names look alike: a stored name holding a backslash is escaped.
pub fn header_name_text(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(s) if !s.contains(['\0', '\\']) => s.to_owned(),
        _ => name.escape_ascii().to_string(),
    }
}

/// The bytes of a header name stored by [`header_name_text`]: as it is
/// when it holds no backslash, else read back from the `escape_ascii`
/// form. `None`: not a form `header_name_text` writes.
pub fn header_name_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.contains('\\') {
        return Some(text.as_bytes().to_vec());
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, len) = match b.get(i + 1)? {
            b't' => (b'\t', 2),
            b'r' => (b'\r', 2),
            b'n' => (b'\n', 2),
            c @ (b'\\' | b'\'' | b'"') => (*c, 2),
            b'x' => {
                let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                (u8::from_str_radix(hex, 16).ok()?, 4)
            }
            _ => return None,
        };
        out.push(byte);
        i += len;
    }
    Some(out)
}

/// Every header of the message, names as raw bytes. rust-rdkafka's
/// `Headers::get` panics on a name that is not UTF-8 (`CStr::to_str`
/// unwrapped), which would kill the partition's worker on one record, so
/// the headers are read through librdkafka's C API instead.
///
/// # Safety
/// `msg` points at a live message.
unsafe fn raw_headers(msg: *const rdsys::rd_kafka_message_t) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    // SAFETY: the caller keeps the native message (and so its headers)
    // alive for this call; librdkafka returns pointers into them, copied
    // out at once.
    unsafe {
        let mut hdrs: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
        let err = rdsys::rd_kafka_message_headers(msg, &mut hdrs);
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
            return out;
        }
        let count = rdsys::rd_kafka_header_cnt(hdrs);
        for idx in 0..count {
            let mut name: *const std::os::raw::c_char = std::ptr::null();
            let mut value: *const std::os::raw::c_void = std::ptr::null();
            let mut size = 0usize;
            let err = rdsys::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size);
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                continue;
            }
            let name = CStr::from_ptr(name).to_bytes().to_vec();
            let value = (!value.is_null())
                .then(|| std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec());
            out.push((name, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Once the records of a written batch are dropped, the next batch's
    /// bytes go into the same buffer (no allocation), and a record larger
    /// than a chunk still comes out whole.
    #[test]
    fn an_arena_reuses_its_buffer_once_a_batch_is_dropped() {
        let mut arena = Arena::default();
        let value = [7u8; 1000];
        let batch: Vec<Bytes> = (0..60).map(|_| arena.copy(&value)).collect();
        assert!(batch.iter().all(|b| b[..] == value[..]));
        let start = batch[0].as_ptr() as usize;
        drop(batch);
        arena.restart();
        let next: Vec<Bytes> = (0..60).map(|_| arena.copy(&value)).collect();
        let within = start..start + ARENA_CHUNK;
        assert!(next.iter().all(|b| within.contains(&(b.as_ptr() as usize))));
        assert!(next.iter().all(|b| b[..] == value[..]));
        let large = vec![3u8; 3 * ARENA_CHUNK];
        assert_eq!(arena.copy(&large)[..], large[..]);
        assert_eq!(next[59][..], value[..], "earlier slices stay intact");
    }

    /// Hardening #6: a header name that is not UTF-8 is kept as bytes and
    /// written to a dead letter byte-escaped, never unwrapped.
    #[test]
    fn header_names_are_bytes_and_escape_losslessly() {
        let record = Record {
            offset: 0,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: vec![
                (vec![0xff, b'a'], Some(b"x".to_vec())),
                (b"trace".to_vec(), Some(b"t".to_vec())),
            ],
        };
        assert_eq!(record.header("trace"), Some(&b"t"[..]));
        assert_eq!(record.header("a"), None);
        assert_eq!(header_name_text(&[0xff, b'a']), "\\xffa");
        assert_eq!(header_name_text(b"plain"), "plain");
        assert_eq!(header_name_text(b"a\0b"), "a\\x00b");
    }
}
