//! Durable storage: the [`Disk`] seam with its production ([`FsDisk`]) and simulated
//! ([`SimDisk`]) implementations, and the write-ahead log ([`Wal`]) raft's log store is built
//! on.
//!
//! # Layout
//! - `disk`: the [`Disk`] trait and its durability contract.
//! - `fs_disk`: [`FsDisk`], std::fs with fdatasync and directory fsync.
//! - `sim_disk`: [`SimDisk`], in memory, losing or tearing unsynced writes on [`SimDisk::crash`].
//! - [`wal`]: the segmented log, its meta file and committed markers, with group commit.

mod disk;
mod fs_disk;
mod sim_disk;
pub mod wal;

pub use self::disk::{DirLock, Disk};
pub use self::fs_disk::{FsDisk, LOCK_FILE};
pub use self::sim_disk::{CrashReport, DiskFault, SECTOR_BYTES, SimDisk, SimDiskCounters};
pub use self::wal::{OnDurable, Recovered, TruncatedTail, Wal, WalError, WalOptions};
