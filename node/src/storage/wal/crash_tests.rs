//! The WAL under random power failures on [`SimDisk`]: random operations, a crash at a random
//! point, reopen, and check every durability promise against a model of what was acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::{Recovered, Wal, WalOptions};
use crate::storage::{Disk, SimDisk};

/// A [`SimDisk`] behind a power switch that trips after a budget of calls, or when the test
/// flips it. After that every call fails, so the crash lands between any two disk calls of the
/// writer (between a write and its sync, a removal and its directory sync, ...), and a writer
/// still running (on a blocking thread in production mode) cannot write after the crash. The
/// switch is held for the whole of each call, so a call either completes before the power goes
/// or fails.
struct FencedDisk {
    disk: Arc<SimDisk>,
    power: Mutex<Power>,
    /// Notified when the power goes: a WAL then stalls (retrying a disk that never comes back),
    /// so the test stops waiting for the operation in flight.
    lost: tokio::sync::Notify,
}

struct Power {
    on: bool,
    /// Calls left before the power goes; `None` while unarmed.
    calls_left: Option<u64>,
}

impl FencedDisk {
    fn new(disk: Arc<SimDisk>) -> FencedDisk {
        FencedDisk { disk, power: Mutex::new(Power { on: true, calls_left: None }), lost: tokio::sync::Notify::new() }
    }

    /// Cuts the power after `calls` more calls.
    fn arm(&self, calls: u64) {
        self.power.lock().unwrap().calls_left = Some(calls);
    }

    fn power_off(&self) {
        self.power.lock().unwrap().on = false;
    }

    fn call<T>(&self, work: impl FnOnce(&SimDisk) -> io::Result<T>) -> io::Result<T> {
        let mut power = self.power.lock().unwrap();
        if let Some(calls_left) = &mut power.calls_left {
            if *calls_left == 0 {
                if power.on {
                    self.lost.notify_one();
                }
                power.on = false;
            } else {
                *calls_left -= 1;
            }
        }
        if !power.on {
            return Err(io::Error::other("powered off"));
        }
        work(&self.disk)
    }
}

impl Disk for FencedDisk {
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.call(|disk| disk.read_at(path, offset, buf))
    }
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.call(|disk| disk.write_at(path, offset, data))
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        self.call(|disk| disk.len(path))
    }
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.call(|disk| disk.set_len(path, len))
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        self.call(|disk| disk.sync(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.call(|disk| disk.rename(from, to))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.call(|disk| disk.remove(path))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.call(|disk| disk.sync_dir(dir))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.call(|disk| disk.list(dir))
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.call(|disk| disk.create_dir_all(dir))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.call(|disk| disk.exists(path))
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<crate::storage::DirLock> {
        self.call(|disk| disk.lock_dir(dir))
    }
}

/// An append whose callback reported it durable.
struct Acked {
    index: u64,
    payload: Bytes,
    /// How many truncations had been issued when it was appended: only later ones may undo it.
    truncations_before: usize,
}

/// What the test did and what the WAL promised, across crashes.
#[derive(Default)]
struct Model {
    /// Filled by `on_durable` callbacks, which run on the writer task.
    acked: Arc<Mutex<Vec<Acked>>>,
    /// Every payload ever appended at each index.
    versions: BTreeMap<u64, BTreeSet<Bytes>>,
    /// The `after` of every truncation issued, in order (`None` truncates everything).
    truncations: Vec<Option<u64>>,
    /// The highest purge issued.
    purged: Option<u64>,
    /// What the current WAL should return from a read.
    visible: BTreeMap<u64, Bytes>,
    /// What the recovered meta may be: the last one saved with `Ok`, or one whose save
    /// failed after it (its write may have landed).
    meta_possible: Vec<Option<Bytes>>,
    /// The last committed value set on any WAL so far (values only grow).
    committed_set: u64,
    /// The last value set on the current WAL: a value set before a crash and not flushed is
    /// not promised, so `flush_committed` covers only values set since the last open.
    committed_set_since_open: Option<u64>,
    /// The value set before the last `flush_committed` that returned `Ok`.
    committed_flushed: Option<u64>,
    /// A counter making every payload unique.
    payloads: u64,
}

impl Model {
    /// Whether an acknowledged entry must still be in the log: no later truncation cut it and
    /// no purge covered it.
    fn must_survive(&self, acked: &Acked) -> bool {
        let cut = self.truncations[acked.truncations_before..]
            .iter()
            .any(|after| after.is_none_or(|after| acked.index > after));
        !cut && self.purged.is_none_or(|purged| acked.index > purged)
    }

    /// Checks a freshly recovered WAL against every promise, then adopts its contents.
    /// Returns how many acknowledged entries it checked.
    async fn check_recovered(&mut self, wal: &Wal, recovered: &Recovered, seed: u64) -> usize {
        assert!(self.meta_possible.contains(&recovered.meta), "seed {seed}: meta {:?}", recovered.meta);
        self.meta_possible = vec![recovered.meta.clone()];
        let committed = recovered.committed.as_ref().map(|c| u64::from_le_bytes(c[..].try_into().unwrap()));
        assert!(
            committed >= self.committed_flushed,
            "seed {seed}: committed {committed:?} < {:?}",
            self.committed_flushed
        );
        assert!(committed.unwrap_or(0) <= self.committed_set, "seed {seed}: committed from nowhere");
        if let Some(purged) = self.purged {
            wal.purge(purged).await.unwrap();
        }
        let entries = wal.read(0..u64::MAX).await.unwrap();
        let indices: Vec<u64> = entries.iter().map(|(index, _)| *index).collect();
        let expected: Vec<u64> = wal.first_index().map_or(Vec::new(), |first| (first..wal.next_index()).collect());
        assert_eq!(indices, expected, "seed {seed}: the log is consecutive");
        for (index, payload) in &entries {
            assert!(self.versions[index].contains(payload), "seed {seed}: entry {index} was never appended");
        }
        let present: BTreeMap<u64, Bytes> = entries.into_iter().collect();
        let acked = self.acked.lock().unwrap();
        let surviving: Vec<&Acked> = acked.iter().filter(|acked| self.must_survive(acked)).collect();
        for acked in &surviving {
            assert_eq!(
                present.get(&acked.index),
                Some(&acked.payload),
                "seed {seed}: acked entry {} lost",
                acked.index
            );
        }
        let checked = surviving.len();
        drop(acked);
        self.visible = present;
        self.committed_set_since_open = None;
        checked
    }

    fn next_payload(&mut self, index: u64, rng: &mut SmallRng) -> Bytes {
        self.payloads += 1;
        let len = if rng.random_bool(0.1) { rng.random_range(600..2000) } else { rng.random_range(0..120) };
        let mut payload = format!("{index}/{}/", self.payloads).into_bytes();
        payload.resize(payload.len() + len, b'a' + (self.payloads % 26) as u8);
        self.versions.entry(index).or_default().insert(Bytes::from(payload.clone()));
        Bytes::from(payload)
    }
}

async fn append_random(wal: &Wal, model: &mut Model, rng: &mut SmallRng) -> io::Result<()> {
    let first = wal.next_index();
    let entries: Vec<(u64, Bytes)> =
        (first..first + rng.random_range(1..6)).map(|index| (index, model.next_payload(index, rng))).collect();
    let (acked, truncations_before) = (model.acked.clone(), model.truncations.len());
    let copies = entries.clone();
    let on_durable = Box::new(move |result: io::Result<()>| {
        if result.is_ok() {
            let mut acked = acked.lock().unwrap();
            acked.extend(copies.into_iter().map(|(index, payload)| Acked { index, payload, truncations_before }));
        }
    });
    wal.append(entries.clone(), on_durable).await?;
    model.visible.extend(entries);
    Ok(())
}

async fn truncate_random(wal: &Wal, model: &mut Model, rng: &mut SmallRng) -> io::Result<()> {
    let Some(first) = wal.first_index() else { return Ok(()) };
    let after = rng.random_range(first..=wal.next_index()).checked_sub(1);
    // Recorded before the call: if the call fails the truncation may still have been queued,
    // and recording one that did not happen only weakens the check.
    model.truncations.push(after);
    wal.truncate_after(after).await?;
    model.visible.retain(|index, _| after.is_some_and(|after| *index <= after));
    Ok(())
}

async fn purge_random(wal: &Wal, model: &mut Model, rng: &mut SmallRng) -> io::Result<()> {
    let upto = rng.random_range(wal.first_index().unwrap_or(0)..wal.next_index() + 3);
    // Recorded first, as truncations are: the test may stop waiting when the power goes.
    model.purged = model.purged.max(Some(upto));
    wal.purge(upto).await?;
    model.visible.retain(|index, _| *index > upto);
    Ok(())
}

async fn save_meta_random(wal: &Wal, model: &mut Model, rng: &mut SmallRng) -> io::Result<()> {
    let meta = Bytes::from(format!("meta {}", rng.random::<u32>()));
    // Possible before the call returns: the test may stop waiting for it when the power goes.
    model.meta_possible.push(Some(meta.clone()));
    wal.save_meta(meta.clone()).await?;
    model.meta_possible = vec![Some(meta)];
    Ok(())
}

/// One random operation; an error means the power went and the round is over.
async fn step(wal: &Wal, model: &mut Model, rng: &mut SmallRng) -> io::Result<()> {
    match rng.random_range(0..100) {
        0..45 => append_random(wal, model, rng).await,
        45..55 => truncate_random(wal, model, rng).await,
        55..60 => purge_random(wal, model, rng).await,
        60..68 => save_meta_random(wal, model, rng).await,
        68..82 => {
            model.committed_set += 1;
            wal.set_committed(Bytes::copy_from_slice(&model.committed_set.to_le_bytes()))?;
            model.committed_set_since_open = Some(model.committed_set);
            Ok(())
        }
        82..87 => {
            wal.flush_committed().await?;
            model.committed_flushed = model.committed_flushed.max(model.committed_set_since_open);
            Ok(())
        }
        87..95 => {
            for _ in 0..rng.random_range(1..8) {
                tokio::task::yield_now().await;
            }
            Ok(())
        }
        _ => {
            let entries = wal.read(0..u64::MAX).await?;
            assert_eq!(entries, model.visible.clone().into_iter().collect::<Vec<_>>());
            Ok(())
        }
    }
}

/// Totals over all seeds, to show the crashes really hurt.
#[derive(Debug, Default)]
struct Damage {
    bytes_lost: u64,
    writes_torn: u64,
    tails_truncated: u64,
    acked_checked: usize,
}

// Goal: every durability promise holds across power failures at arbitrary points. Method: for
// many seeds, run rounds of random appends, truncations, purges, meta saves and committed
// markers on a WAL over SimDisk; the power goes after a random number of disk calls (so
// between any two calls of the writer) or after a random number of operations; crash the disk,
// reopen and check against the model: acknowledged entries not since truncated or purged are
// present and identical, the log is consecutive and holds only payloads that were appended,
// the meta is the last one saved (or one whose save failed), and the committed marker is not
// older than the last one flushed on the same WAL. Every other seed records the log end after
// every batch, so a torn tail is never mistaken for lost synced entries (the open must not
// fail).
#[tokio::test]
async fn acknowledged_state_survives_random_crashes() {
    const SEEDS: u64 = 100;
    const ROUNDS: usize = 6;
    let dir = PathBuf::from("/node/wal");
    let options =
        WalOptions { segment_bytes_max: 2048, cache_bytes_max: 1024, batch_bytes_max: 4096, ..WalOptions::default() };
    let mut damage = Damage::default();
    for seed in 0..SEEDS {
        let log_end_save_interval = if seed % 2 == 0 { Duration::ZERO } else { options.log_end_save_interval };
        let options = WalOptions { log_end_save_interval, ..options.clone() };
        let sim = Arc::new(SimDisk::new(seed));
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut model = Model { meta_possible: vec![None], ..Model::default() };
        for _ in 0..ROUNDS {
            let fence = Arc::new(FencedDisk::new(sim.clone()));
            let (wal, recovered) = Wal::open(fence.clone(), dir.clone(), options.clone()).await.unwrap();
            damage.tails_truncated += u64::from(recovered.truncated_tail.is_some());
            damage.acked_checked += model.check_recovered(&wal, &recovered, seed).await;
            fence.arm(rng.random_range(1..150));
            for _ in 0..rng.random_range(1..200) {
                let result = tokio::select! {
                    biased;
                    () = fence.lost.notified() => Err(io::Error::other("powered off")),
                    result = step(&wal, &mut model, &mut rng) => result,
                };
                if result.is_err() {
                    break;
                }
            }
            fence.power_off();
            let report = sim.crash();
            damage.bytes_lost += report.bytes_lost;
            damage.writes_torn += report.writes_torn;
            // The writer answers everything still queued with errors, so every callback has
            // run by the time this returns.
            let _ = wal.shutdown().await;
        }
        let (wal, recovered) = Wal::open(sim.clone(), dir.clone(), options.clone()).await.unwrap();
        damage.acked_checked += model.check_recovered(&wal, &recovered, seed).await;
    }
    tracing::info!(?damage, "random crashes");
    assert!(damage.bytes_lost > 0 && damage.writes_torn > 0, "crashes did no damage: {damage:?}");
    assert!(damage.tails_truncated > 0, "no torn tail was ever recovered: {damage:?}");
    assert!(damage.acked_checked > 1000, "too little was checked: {damage:?}");
}

// Goal: what recovery keeps is durable. A process killed after writing entries but before
// syncing them leaves them with the OS; the next open reads them back and raft builds on them
// (it votes and acknowledges as if they were its log), so a power cut after that open must not
// take them away. Method: kill the process at each point of an append (the disk keeps unsynced
// writes), reopen, note what recovery kept, cut the power, reopen and compare.
#[tokio::test]
async fn entries_recovered_after_a_kill_survive_a_later_power_cut() {
    let dir = PathBuf::from("/node/wal");
    let options = WalOptions { segment_bytes_max: 2048, ..WalOptions::default() };
    let entries = |range: std::ops::Range<u64>| -> Vec<(u64, Bytes)> {
        range.map(|index| (index, Bytes::from(format!("entry {index} {}", "x".repeat(300))))).collect()
    };
    let mut kept_unsynced = 0;
    for calls in 1..40 {
        let sim = Arc::new(SimDisk::new(calls));
        let (wal, _) = Wal::open(sim.clone(), dir.clone(), options.clone()).await.unwrap();
        let (durable, synced) = tokio::sync::oneshot::channel();
        wal.append(entries(0..5), Box::new(move |result| drop(durable.send(result)))).await.unwrap();
        synced.await.unwrap().unwrap();
        wal.shutdown().await.unwrap();

        let fence = Arc::new(FencedDisk::new(sim.clone()));
        let (wal, _) = Wal::open(fence.clone(), dir.clone(), options.clone()).await.unwrap();
        fence.arm(calls);
        let (durable, synced) = tokio::sync::oneshot::channel();
        let appended = wal.append(entries(5..12), Box::new(move |result| drop(durable.send(result)))).await;
        if appended.is_ok() {
            tokio::select! {
                biased;
                () = fence.lost.notified() => {}
                _ = synced => {}
            }
        }
        fence.power_off();
        let _ = wal.shutdown().await;
        if sim.unsynced_bytes() == 0 {
            continue;
        }

        let (wal, _) = Wal::open(sim.clone(), dir.clone(), options.clone()).await.unwrap();
        let kept = wal.read(0..u64::MAX).await.unwrap();
        wal.shutdown().await.unwrap();
        kept_unsynced += usize::from(kept.len() > 5);
        sim.crash();
        let (wal, _) = Wal::open(sim.clone(), dir.clone(), options.clone()).await.unwrap();
        let after = wal.read(0..u64::MAX).await.unwrap();
        let indices = |log: &[(u64, Bytes)]| log.iter().map(|(index, _)| *index).collect::<Vec<_>>();
        assert_eq!(indices(&after), indices(&kept), "killed after {calls} calls: a power cut took what recovery kept");
        assert_eq!(after, kept);
    }
    assert!(kept_unsynced > 0, "no kill left unsynced entries for recovery to keep");
}
