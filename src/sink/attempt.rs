//! What one write attempt is given (a [`Slice`] of a partition's records)
//! and what it returns ([`Attempt`], with the [`WriteStats`] of a commit).

use uuid::Uuid;

use crate::offsets::PartitionKey;
use crate::record::Record;

/// A record the database refused, to be dead-lettered instead of written.
#[derive(Debug, Clone)]
pub struct Refused {
    pub reason: String,
    pub sqlstate: Option<String>,
}

impl Refused {
    /// A record that could not be decoded or coerced: no SQLSTATE, the
    /// decoder's reason.
    pub fn decode(reason: String) -> Refused {
        Refused {
            reason,
            sqlstate: None,
        }
    }
}

/// What one committed attempt did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriteStats {
    /// Rows inserted or updated in the table.
    pub rows: u64,
    /// Rows deleted by tombstones.
    pub deleted: u64,
    /// Appends skipped because their idempotency key was already present.
    pub conflicts: u64,
    /// Upserts skipped because the row held a newer version.
    pub stale: u64,
    /// Records with no value that deleted nothing.
    pub tombstones: u64,
    /// Upserts and deletes superseded inside the batch by a later record
    /// with the same key (only the last one's effect is written).
    pub collapsed: u64,
    pub dead_letters: Vec<DeadLetterKind>,
}

/// Why a record was dead-lettered (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// It could not be decoded or coerced to the column types.
    Decode,
    /// The database refused it (SQLSTATE class 22 or 23).
    Refused,
}

impl DeadLetterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Decode => "decode",
            DeadLetterKind::Refused => "refused",
        }
    }
}

/// Result of one attempt.
#[derive(Debug)]
pub enum Attempt {
    /// What each route of the topic wrote, in route order.
    Committed(Vec<WriteStats>),
    /// The fence held the write back; nothing was written.
    Fenced,
    /// `on_error: stop` and the record at `index` cannot be decoded: nothing
    /// was written.
    Rejected { index: usize, reason: String },
}

/// One partition's slice of records and its place in the offset sequence.
pub struct Slice<'a> {
    pub key: &'a PartitionKey,
    pub owner: Uuid,
    /// The stored next offset this slice continues from.
    pub start: Option<i64>,
    pub records: &'a [Record],
    /// Routes (by index) that refused the slice's single record, and why:
    /// each of them dead-letters it instead of writing it.
    pub refused: &'a [(usize, Refused)],
}

impl Slice<'_> {
    pub fn end(&self) -> i64 {
        self.records.last().map_or(0, |r| r.offset + 1)
    }

    /// Why route `index` refused the record, if it did.
    pub fn refused_by(&self, index: usize) -> Option<&Refused> {
        self.refused
            .iter()
            .find(|(route, _)| *route == index)
            .map(|(_, refused)| refused)
    }
}
