//! glibc malloc settings for the process, set once at start-up.
//!
//! librdkafka allocates an op of a few hundred bytes per fetched record on
//! its broker thread, and the workers free them on theirs. With glibc's
//! defaults a thread's heap is trimmed (its top pages given back to the
//! kernel) whenever 128 KiB at its top are free, and buffers from 128 KiB
//! up are mapped afresh each time; either way the next allocations fault
//! in new zeroed pages. A profile of the drain benchmark (sluice as its own
//! process, 1,000,000 records, 32 partitions) found 12 % of the sink's
//! samples in those page faults (`clear_page_erms` under
//! `rd_kafka_op_new_fetch_msg` and under the fetch's `recvmsg`). Keeping up
//! to [`TRIM_THRESHOLD`] free at a heap's top and serving buffers below
//! [`MMAP_THRESHOLD`] from the heap took the sink's CPU per record from
//! 1.95–2.09 µs to 1.76–1.81 µs there (docs/performance.md).
//!
//! The price is memory that stays resident once used: at most what the
//! process held at its peak, which is what a memory limit must allow
//! anyway. An operator who sets glibc's own knobs (`GLIBC_TUNABLES` with a
//! `glibc.malloc.` tunable, or `MALLOC_TRIM_THRESHOLD_` /
//! `MALLOC_MMAP_THRESHOLD_`) keeps them: sluice then sets nothing.

/// Free bytes a heap keeps at its top before giving them back (glibc's
/// default: 128 KiB, raised dynamically up to 64 MiB).
pub const TRIM_THRESHOLD: usize = 64 * 1024 * 1024;

/// Allocations from this size on get their own mapping (glibc's default:
/// 128 KiB, raised dynamically up to 32 MiB, the most it allows).
pub const MMAP_THRESHOLD: usize = 32 * 1024 * 1024;

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// The thresholds were set.
    Set,
    /// The environment sets glibc's malloc itself; left as it is.
    LeftToEnvironment,
    /// Not glibc (musl, another system): nothing to set.
    NotGlibc,
}

/// Sets the thresholds, unless the environment sets malloc itself. Called
/// first thing, so that every heap sees them from its first allocation.
pub fn tune() -> Tuning {
    let tunables = std::env::var("GLIBC_TUNABLES").ok();
    let env_var = |name| std::env::var_os(name).is_some();
    let set_elsewhere = env_sets_malloc(
        tunables.as_deref(),
        env_var("MALLOC_TRIM_THRESHOLD_") || env_var("MALLOC_MMAP_THRESHOLD_"),
    );
    if set_elsewhere {
        return Tuning::LeftToEnvironment;
    }
    apply()
}

/// Whether the environment tunes glibc's malloc: a `glibc.malloc.` tunable
/// in `GLIBC_TUNABLES`, or one of the older `MALLOC_*_` variables.
fn env_sets_malloc(glibc_tunables: Option<&str>, malloc_var: bool) -> bool {
    malloc_var
        || glibc_tunables.is_some_and(|t| {
            t.split(':')
                .any(|tunable| tunable.trim().starts_with("glibc.malloc."))
        })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> Tuning {
    let as_int = |v: usize| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes the allocator's parameters, under the
    // arenas' locks, so any thread may call it at any time. A refused value
    // (it returns 0) leaves glibc's default: correct, only slower.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(TRIM_THRESHOLD));
        libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(MMAP_THRESHOLD));
    }
    Tuning::Set
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> Tuning {
    Tuning::NotGlibc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_malloc_settings_are_kept() {
        assert!(!env_sets_malloc(None, false));
        assert!(!env_sets_malloc(Some("glibc.rtld.nns=2"), false));
        assert!(env_sets_malloc(
            Some("glibc.rtld.nns=2:glibc.malloc.trim_threshold=1024"),
            false
        ));
        assert!(env_sets_malloc(Some("glibc.malloc.arena_max=2"), false));
        assert!(env_sets_malloc(None, true));
    }
}
