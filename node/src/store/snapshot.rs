//! Snapshot files: the store's state at one applied log id, written through [`Disk`] so the
//! simulator can lose what was not synced.
//!
//! A file is `[magic 8][format u32][crc32c u32][body length u64][body]`, the body being the
//! bincode of the snapshot's meta, the [`KvState`], the cluster id (from format 2 on) and the
//! ACL state (from format 3 on), which the state does not serialize itself so that older
//! files still decode: a format 2 file as a state whose ACLs were never bootstrapped. It is written to a temporary name,
//! synced, renamed into place and the directory synced, so a crash leaves either the old
//! snapshot or the new one, never a torn one under a final name. The CRC is checked before a
//! file is decoded, both at startup and when a snapshot arrives from the leader.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::acl::{AclPast, AclState};
use crate::bounded_decode;
use crate::command::ClusterId;
use crate::raft::SnapshotMeta;
use crate::rt;
use crate::storage::Disk;
use crate::store::state::KvState;

const MAGIC: [u8; 8] = *b"CAIRNSNP";
/// 2: sessions carry request fingerprints, and the body the cluster id. 3: the body carries the
/// ACL state. 4: and the ACL states the kept events were written under. Formats 2 and 3 are read
/// (without ACLs, without their past); format 1 files are refused, naming the version: their
/// sessions cannot be read as fingerprinted ones.
const FORMAT: u32 = 4;
const FORMAT_WITHOUT_ACL_PAST: u32 = 3;
const FORMAT_WITHOUT_ACL: u32 = 2;
const HEADER_BYTES: u64 = 8 + 4 + 4 + 8;
const IO_CHUNK_BYTES: usize = 1024 * 1024;
const FINAL_SUFFIX: &str = ".snap";
const TEMP_SUFFIX: &str = ".tmp";

/// A snapshot file, as openraft passes it around (built locally or received from the leader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Body<'a> {
    meta: std::borrow::Cow<'a, SnapshotMeta>,
    state: std::borrow::Cow<'a, KvState>,
    cluster_id: Option<ClusterId>,
    acl: std::borrow::Cow<'a, AclState>,
    acl_past: std::borrow::Cow<'a, AclPast>,
}

/// The body of a format 3 file.
#[derive(Deserialize)]
struct BodyWithoutAclPast {
    meta: SnapshotMeta,
    state: KvState,
    cluster_id: Option<ClusterId>,
    acl: AclState,
}

/// The body of a format 2 file.
#[derive(Deserialize)]
struct BodyWithoutAcl {
    meta: SnapshotMeta,
    state: KvState,
    cluster_id: Option<ClusterId>,
}

/// The snapshot directory of one node.
pub struct SnapshotFiles {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
}

impl SnapshotFiles {
    /// Opens `dir`, removing temporary files a crash left behind.
    pub fn open(disk: Arc<dyn Disk>, dir: PathBuf) -> io::Result<SnapshotFiles> {
        disk.create_dir_all(&dir)?;
        for name in disk.list(&dir)? {
            if name.ends_with(TEMP_SUFFIX) {
                disk.remove(&dir.join(&name))?;
            }
        }
        disk.sync_dir(&dir)?;
        Ok(SnapshotFiles { disk, dir })
    }

    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    /// A fresh temporary path for a snapshot being written or received.
    pub fn temp_path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("incoming-{label}-{:016x}{TEMP_SUFFIX}", rt::random_u64()))
    }

    /// Writes `state` as the snapshot at `meta` and makes it current.
    pub async fn write(&self, meta: &SnapshotMeta, state: &KvState) -> io::Result<SnapshotFile> {
        let built = self.write_detached("built", meta, state).await?;
        self.adopt(meta, built).await
    }

    /// Writes `state` as a synced snapshot file under a temporary name, which never becomes
    /// current: a backup being streamed, removed by [`SnapshotFiles::discard`] or, should the
    /// process die first, at the next [`SnapshotFiles::open`].
    pub async fn write_detached(&self, label: &str, meta: &SnapshotMeta, state: &KvState) -> io::Result<SnapshotFile> {
        let file = SnapshotFile { path: self.temp_path(label) };
        let disk = self.disk.clone();
        let path = file.path.clone();
        let (owned_meta, owned_state) = (meta.clone(), state.clone());
        let written = rt::run_blocking(move || write_file(disk.as_ref(), &path, &owned_meta, &owned_state)).await;
        if let Err(error) = written {
            self.discard(&file);
            return Err(error);
        }
        Ok(file)
    }

    /// Reads and verifies a snapshot file.
    pub async fn load(&self, file: &SnapshotFile) -> io::Result<(SnapshotMeta, KvState)> {
        let disk = self.disk.clone();
        let path = file.path.clone();
        rt::run_blocking(move || load_file(disk.as_ref(), &path)).await
    }

    /// Makes a verified snapshot file the current one: renames it into place, syncs the
    /// directory, and removes older snapshots.
    pub async fn adopt(&self, meta: &SnapshotMeta, file: SnapshotFile) -> io::Result<SnapshotFile> {
        let final_path = self.dir.join(final_name(meta));
        let disk = self.disk.clone();
        let dir = self.dir.clone();
        let target = final_path.clone();
        rt::run_blocking(move || {
            let source = if file.path.parent() == Some(dir.as_path()) {
                file.path
            } else {
                copy_into(disk.as_ref(), &file.path, &dir)?
            };
            if source != target {
                disk.rename(&source, &target)?;
            }
            disk.sync_dir(&dir)?;
            for name in disk.list(&dir)? {
                let path = dir.join(&name);
                if name.ends_with(FINAL_SUFFIX) && path != target {
                    disk.remove(&path)?;
                }
            }
            disk.sync_dir(&dir)
        })
        .await?;
        Ok(SnapshotFile { path: final_path })
    }

    /// The newest valid snapshot, if any.
    pub async fn current(&self) -> io::Result<Option<(SnapshotMeta, SnapshotFile)>> {
        let disk = self.disk.clone();
        let dir = self.dir.clone();
        rt::run_blocking(move || {
            let mut names: Vec<String> =
                disk.list(&dir)?.into_iter().filter(|name| name.ends_with(FINAL_SUFFIX)).collect();
            names.sort();
            while let Some(name) = names.pop() {
                let path = dir.join(&name);
                match load_meta(disk.as_ref(), &path) {
                    Ok(meta) => return Ok(Some((meta, SnapshotFile { path }))),
                    Err(error) => tracing::warn!(%error, file = %path.display(), "skipping an invalid snapshot"),
                }
            }
            Ok(None)
        })
        .await
    }

    /// Size of a snapshot file, for streaming it to a follower.
    pub fn len(&self, file: &SnapshotFile) -> io::Result<u64> {
        self.disk.len(&file.path)
    }

    /// Reads up to `max` bytes of a snapshot file at `offset`.
    pub fn read_chunk(&self, file: &SnapshotFile, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let mut chunk = vec![0; max];
        let read = self.disk.read_at(&file.path, offset, &mut chunk)?;
        chunk.truncate(read);
        Ok(chunk)
    }

    /// Appends a received chunk to a temporary file, syncing after the last one.
    pub fn write_chunk(&self, file: &SnapshotFile, offset: u64, data: &[u8], last: bool) -> io::Result<()> {
        self.disk.write_at(&file.path, offset, data)?;
        if last {
            self.disk.sync(&file.path)?;
        }
        Ok(())
    }

    pub fn discard(&self, file: &SnapshotFile) {
        if let Err(error) = self.disk.remove(&file.path) {
            tracing::debug!(%error, "removing an abandoned snapshot file");
        }
    }
}

/// Copies a snapshot file from outside the snapshot directory into a synced temporary file in
/// it, so that adopting it never moves another directory's file.
fn copy_into(disk: &dyn Disk, source: &Path, dir: &Path) -> io::Result<PathBuf> {
    let copy = dir.join(format!("incoming-copy-{:016x}{TEMP_SUFFIX}", rt::random_u64()));
    let len = disk.len(source)?;
    let mut chunk = vec![0; IO_CHUNK_BYTES];
    let mut offset = 0;
    while offset < len {
        let read = disk.read_at(source, offset, &mut chunk)?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        disk.write_at(&copy, offset, &chunk[..read])?;
        offset += read as u64;
    }
    disk.sync(&copy)?;
    Ok(copy)
}

/// Sorts by index, then term, so the lexically greatest name is the newest snapshot.
fn final_name(meta: &SnapshotMeta) -> String {
    let (index, term) = meta.last_log_id.as_ref().map_or((0, 0), |id| (id.index, id.leader_id.term));
    format!("snapshot-{index:020}-{term:020}{FINAL_SUFFIX}")
}

/// Streams the body to the file behind a placeholder header, then fills in the header and syncs;
/// the state is never encoded into one big buffer.
fn write_file(disk: &dyn Disk, path: &Path, meta: &SnapshotMeta, state: &KvState) -> io::Result<()> {
    let body = Body {
        meta: std::borrow::Cow::Borrowed(meta),
        state: std::borrow::Cow::Borrowed(state),
        cluster_id: state.cluster_id(),
        acl: std::borrow::Cow::Borrowed(state.acl()),
        acl_past: std::borrow::Cow::Borrowed(state.acl_past()),
    };
    let mut writer =
        DiskWriter { disk, path, offset: HEADER_BYTES, buffer: Vec::with_capacity(IO_CHUNK_BYTES), crc: 0 };
    bincode::serde::encode_into_std_write(&body, &mut writer, bincode::config::standard()).map_err(io::Error::other)?;
    writer.flush()?;
    let body_len = writer.offset - HEADER_BYTES;
    let mut header = Vec::with_capacity(HEADER_BYTES as usize);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    header.extend_from_slice(&writer.crc.to_le_bytes());
    header.extend_from_slice(&body_len.to_le_bytes());
    debug_assert_eq!(header.len() as u64, HEADER_BYTES);
    disk.write_at(path, 0, &header)?;
    disk.sync(path)
}

/// Buffers writes into [`IO_CHUNK_BYTES`] pieces written through [`Disk`], keeping a CRC32C.
struct DiskWriter<'a> {
    disk: &'a dyn Disk,
    path: &'a Path,
    offset: u64,
    buffer: Vec<u8>,
    crc: u32,
}

impl Write for DiskWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= IO_CHUNK_BYTES {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.disk.write_at(self.path, self.offset, &self.buffer)?;
        self.crc = crc32c::crc32c_append(self.crc, &self.buffer);
        self.offset += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }
}

/// Reads and verifies the snapshot file at `path` (its checksum, its decoding and the state's
/// consistency): what a backup tool checks before it describes or restores a file.
pub fn load_file(disk: &dyn Disk, path: &Path) -> io::Result<(SnapshotMeta, KvState)> {
    let (format, body_len, reader) = verified_body(disk, path)?;
    let (meta, state) = match format {
        FORMAT_WITHOUT_ACL => {
            let body: BodyWithoutAcl = decode(path, reader, body_len)?;
            let mut state = body.state;
            state.restore_cluster_id(body.cluster_id);
            state.restore_acl(AclState::default(), None);
            (body.meta, state)
        }
        FORMAT_WITHOUT_ACL_PAST => {
            let body: BodyWithoutAclPast = decode(path, reader, body_len)?;
            let mut state = body.state;
            state.restore_cluster_id(body.cluster_id);
            state.restore_acl(body.acl, None);
            (body.meta, state)
        }
        _ => {
            let body: Body<'static> = decode(path, reader, body_len)?;
            let mut state = body.state.into_owned();
            state.restore_cluster_id(body.cluster_id);
            state.restore_acl(body.acl.into_owned(), Some(body.acl_past.into_owned()));
            (body.meta.into_owned(), state)
        }
    };
    if let Some(why) = state.inconsistency() {
        return Err(invalid(path, &format!("not a state the store could have reached: {why}")));
    }
    Ok((meta, state))
}

/// The meta of a verified snapshot file, without decoding its state: bincode writes the body's
/// fields in order with no framing, so the meta is a prefix of the body. Finding the current
/// snapshot at startup therefore costs a checksum pass, not a second copy of the whole state
/// next to the one openraft then installs.
fn load_meta(disk: &dyn Disk, path: &Path) -> io::Result<SnapshotMeta> {
    let (_, body_len, reader) = verified_body(disk, path)?;
    decode(path, reader, body_len)
}

fn invalid(path: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()))
}

/// Decodes `T` from the start of a snapshot body of `body_len` bytes. The checksum only proves
/// the file is what its writer wrote; a hostile leader writes valid checksums too, so the
/// decode is bounded by the body's length like any other input.
fn decode<T: serde::de::DeserializeOwned>(path: &Path, body: impl Read, body_len: u64) -> io::Result<T> {
    bounded_decode::decode_reader(body, body_len).map_err(|e| invalid(path, &format!("cannot decode: {e}")))
}

/// Checks a snapshot file's header and CRC; returns its format, its body's length and a reader
/// over it.
fn verified_body<'a>(disk: &'a dyn Disk, path: &'a Path) -> io::Result<(u32, u64, io::BufReader<DiskReader<'a>>)> {
    let invalid = |why: &str| invalid(path, why);
    let mut header = [0u8; HEADER_BYTES as usize];
    if disk.read_at(path, 0, &mut header)? != header.len() {
        return Err(invalid("shorter than a snapshot header"));
    }
    if header[..8] != MAGIC {
        return Err(invalid("not a snapshot file"));
    }
    let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if ![FORMAT, FORMAT_WITHOUT_ACL_PAST, FORMAT_WITHOUT_ACL].contains(&format) {
        let why =
            format!("snapshot format {format}, this build reads format {FORMAT}: wipe the data directory and rejoin");
        return Err(invalid(&why));
    }
    let crc = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    let body_len = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    let end = HEADER_BYTES.checked_add(body_len);
    let Some(end) = end.filter(|end| Some(*end) == disk.len(path).ok()) else {
        return Err(invalid("length does not match its header"));
    };
    let mut reader = DiskReader { disk, path, offset: HEADER_BYTES, end, crc: 0 };
    let mut sink = io::sink();
    io::copy(&mut reader, &mut sink)?;
    if reader.crc != crc {
        return Err(invalid("checksum mismatch"));
    }
    // bincode reads field by field, often a byte at a time; unbuffered, each of those would be
    // one read through `Disk` (a pread), which made loading a million keys take ten seconds.
    let reader = DiskReader { disk, path, offset: HEADER_BYTES, end, crc: 0 };
    Ok((format, body_len, io::BufReader::with_capacity(IO_CHUNK_BYTES, reader)))
}

/// Reads a byte range of a file through [`Disk`], keeping a running CRC32C of what it read.
struct DiskReader<'a> {
    disk: &'a dyn Disk,
    path: &'a Path,
    offset: u64,
    end: u64,
    crc: u32,
}

impl Read for DiskReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wanted = buf.len().min((self.end - self.offset) as usize).min(IO_CHUNK_BYTES);
        if wanted == 0 {
            return Ok(0);
        }
        let read = self.disk.read_at(self.path, self.offset, &mut buf[..wanted])?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.crc = crc32c::crc32c_append(self.crc, &buf[..read]);
        self.offset += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::bugs::InjectedBugs;
    use crate::command::{Command, Precondition, Request};
    use crate::raft::StoredMembership;
    use crate::storage::SimDisk;

    fn state_with(keys: u64) -> KvState {
        let mut state = KvState::new(64, crate::store::events::HistoryLimits::default());
        for i in 1..=keys {
            let command = Command::Put {
                key: format!("key-{i}").into(),
                value: Bytes::from(vec![b'v'; 100]),
                labels: None,
                expect: Precondition::Always,
            };
            state.apply(i, &Request { tag: None, proposed_at_ms: 0, command }, InjectedBugs::default());
        }
        state
    }

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::vote::leader_id_adv::CommittedLeaderId { term: 1, node_id: 1 },
                index,
            )),
            last_membership: StoredMembership::default(),
        }
    }

    fn files(disk: &Arc<SimDisk>) -> SnapshotFiles {
        SnapshotFiles::open(disk.clone(), PathBuf::from("/snapshots")).expect("the directory opens")
    }

    /// Goal: a written snapshot reads back identical and becomes the current one. Method: write
    /// a state larger than one I/O chunk, load the current snapshot.
    #[tokio::test]
    async fn a_snapshot_round_trips_and_becomes_current() {
        let disk = Arc::new(SimDisk::new(1));
        let files = files(&disk);
        let state = state_with(15_000);
        files.write(&meta(15_000), &state).await.unwrap();
        let (current_meta, file) = files.current().await.unwrap().expect("a current snapshot");
        assert_eq!(current_meta, meta(15_000));
        let (_, loaded) = files.load(&file).await.unwrap();
        assert_eq!(loaded, state);
    }

    /// Goal: a corrupted newest snapshot is never decoded; the previous valid one is used.
    /// Method: keep an old snapshot beside a new one, flip a byte of the new one's body.
    #[tokio::test]
    async fn a_corrupted_snapshot_is_refused_and_an_older_valid_one_is_used() {
        let disk = Arc::new(SimDisk::new(2));
        let files = files(&disk);
        let old = files.write(&meta(5), &state_with(5)).await.unwrap();
        let kept_old = PathBuf::from("/snapshots/kept.snap.tmp");
        disk.write_at(&kept_old, 0, &disk.read_all(&old.path).unwrap()).unwrap();
        let new = files.write(&meta(9), &state_with(9)).await.unwrap();
        disk.rename(&kept_old, &old.path).unwrap();
        disk.corrupt_byte(&new.path, HEADER_BYTES + 40).unwrap();
        assert!(files.load(&new).await.is_err(), "the checksum catches the flipped byte");
        let (current, _) = files.current().await.unwrap().expect("the old snapshot is still valid");
        assert_eq!(current, meta(5));
    }

    /// A snapshot file at `path` with `body`, its header and checksum correct: what a hostile
    /// leader or a tampered disk could hand over.
    fn write_raw(disk: &SimDisk, path: &Path, body: &[u8], declared_len: u64) {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&FORMAT.to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        file.extend_from_slice(&declared_len.to_le_bytes());
        file.extend_from_slice(body);
        disk.write_at(path, 0, &file).unwrap();
    }

    /// Goal: no length inside a checksummed snapshot is trusted. Method: at every position of a
    /// valid body, insert a length prefix declaring 2^44 bytes (the probe's gossip attack,
    /// applied to a snapshot) and load the file; each load is an error naming the file, or a
    /// state, never an abort.
    #[test]
    fn a_snapshot_declaring_a_huge_length_is_an_error_naming_the_file() {
        let disk = SimDisk::new(4);
        disk.create_dir_all(Path::new("/snapshots")).unwrap();
        let path = PathBuf::from("/snapshots/valid.snap");
        write_file(&disk, &path, &meta(2), &state_with(2)).unwrap();
        let body = disk.read_all(&path).unwrap().split_off(HEADER_BYTES as usize);
        let mut refused = 0;
        for at in 0..body.len() {
            let mut lying = body[..at].to_vec();
            lying.push(0xFD);
            lying.extend_from_slice(&(1u64 << 44).to_le_bytes());
            lying.extend_from_slice(&body[at + 1..]);
            let path = PathBuf::from(format!("/snapshots/lying-{at}.snap"));
            write_raw(&disk, &path, &lying, lying.len() as u64);
            if let Err(error) = load_file(&disk, &path) {
                assert!(error.to_string().contains(&*path.to_string_lossy()), "{error}");
                refused += 1;
            }
        }
        assert!(refused > body.len() / 2, "most rewritten bytes are refused: {refused} of {}", body.len());
    }

    /// Goal: a header's body length is not trusted either. Method: declare the largest length.
    #[test]
    fn a_header_declaring_an_impossible_body_length_is_an_error_naming_the_file() {
        let disk = SimDisk::new(5);
        disk.create_dir_all(Path::new("/snapshots")).unwrap();
        let path = PathBuf::from("/snapshots/impossible.snap");
        write_raw(&disk, &path, b"body", u64::MAX);
        let error = load_file(&disk, &path).unwrap_err();
        assert!(error.to_string().contains("impossible.snap"), "{error}");
    }

    /// Goal: power loss while a snapshot is being written leaves the previous snapshot current.
    /// Method: write a snapshot, start writing a second by hand without syncing, crash the disk.
    #[tokio::test]
    async fn a_crash_while_writing_a_snapshot_keeps_the_previous_one() {
        let disk = Arc::new(SimDisk::new(3));
        let files = files(&disk);
        files.write(&meta(5), &state_with(5)).await.unwrap();
        let partial = files.temp_path("built");
        disk.write_at(&partial, 0, b"CAIRNSNP partial").unwrap();
        disk.crash();
        let reopened = SnapshotFiles::open(disk.clone(), PathBuf::from("/snapshots")).unwrap();
        let (current, _) = reopened.current().await.unwrap().expect("the first snapshot survived");
        assert_eq!(current, meta(5));
        assert!(!disk.exists(&partial).unwrap(), "temporary files are cleaned up on open");
    }

    /// Random and mutated snapshot bodies, with valid headers and checksums, never panic the
    /// loader: each is an error naming the file, or a state that takes writes without tripping
    /// the store's assertions (`PROPTEST_CASES` sets the count).
    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::command::ClientTag;
        use crate::hostile_bytes::hostile;

        /// The bodies of a small snapshot whose state has records, a session and history.
        fn valid_bodies() -> Vec<Vec<u8>> {
            let mut state = state_with(3);
            let delete = Command::Delete { key: "key-2".into(), expect: Precondition::Always };
            let tag = Some(ClientTag { client: 7, serial: 1 });
            state.apply(4, &Request { tag, proposed_at_ms: 5, command: delete }, InjectedBugs::default());
            let disk = SimDisk::new(6);
            disk.create_dir_all(Path::new("/snapshots")).unwrap();
            let path = PathBuf::from("/snapshots/valid.snap");
            write_file(&disk, &path, &meta(4), &state).unwrap();
            vec![disk.read_all(&path).unwrap().split_off(HEADER_BYTES as usize)]
        }

        /// What a follower does next with an installed state: every kind of write to it.
        fn apply_after_install(state: &mut KvState) {
            let put = |key: &str| Command::Put {
                key: key.into(),
                value: Bytes::from_static(b"after"),
                labels: None,
                expect: Precondition::Always,
            };
            let commands = [
                (None, put("key-1")),
                (None, Command::Delete { key: "key-3".into(), expect: Precondition::Always }),
                (Some(ClientTag { client: 1 << 100, serial: 1 }), put("fresh")),
                (None, Command::KieDelete { project: "p".into(), ids: vec!["x".into()] }),
            ];
            let revision = state.revision();
            for (index, (tag, command)) in commands.into_iter().enumerate() {
                state.apply(index as u64 + 100, &Request { tag, proposed_at_ms: 9, command }, InjectedBugs::default());
            }
            assert!(state.revision() > revision);
        }

        proptest! {
            #[test]
            fn hostile_snapshot_bodies_never_panic_the_loader_nor_later_applies(body in hostile(valid_bodies(), 2048)) {
                let disk = SimDisk::new(7);
                disk.create_dir_all(Path::new("/snapshots")).unwrap();
                let path = PathBuf::from("/snapshots/hostile.snap");
                write_raw(&disk, &path, &body, body.len() as u64);
                let _ = load_meta(&disk, &path);
                match load_file(&disk, &path) {
                    Err(error) => prop_assert!(error.to_string().contains("hostile.snap"), "{}", error),
                    Ok((_, mut state)) => apply_after_install(&mut state),
                }
            }
        }
    }

    /// Goal: snapshots carry the cluster id, and format 1 snapshots (written before sessions
    /// kept fingerprints) are refused with their version named, never misread. Method: a state
    /// with a cluster id round trips; a format 1 header is refused.
    #[tokio::test]
    async fn snapshots_carry_the_cluster_id_and_format_1_is_refused_by_name() {
        let disk = Arc::new(SimDisk::new(4));
        let files = files(&disk);
        let mut state = state_with(3);
        let command = Command::SetClusterId { cluster_id: ClusterId(0x1234) };
        state.apply(4, &Request { tag: None, proposed_at_ms: 0, command }, InjectedBugs::default());
        let file = files.write(&meta(4), &state).await.unwrap();
        let (_, loaded) = files.load(&file).await.unwrap();
        assert_eq!(loaded.cluster_id(), Some(ClusterId(0x1234)));

        let old_body = bincode::serde::encode_to_vec((meta(3), state_with(3)), bincode::config::standard()).unwrap();
        let mut old = Vec::new();
        old.extend_from_slice(&MAGIC);
        old.extend_from_slice(&1u32.to_le_bytes());
        old.extend_from_slice(&crc32c::crc32c(&old_body).to_le_bytes());
        old.extend_from_slice(&(old_body.len() as u64).to_le_bytes());
        old.extend_from_slice(&old_body);
        let old_path = PathBuf::from("/snapshots/old.snap");
        disk.write_at(&old_path, 0, &old).unwrap();
        let refused = files.load(&SnapshotFile { path: old_path }).await.unwrap_err();
        assert!(refused.to_string().contains("snapshot format 1"), "{refused}");
    }

    /// Goal: snapshots carry the ACL state and the states the kept events were written under;
    /// format 3 snapshots load with that past unknown, and format 2 snapshots (written before
    /// ACLs) as a cluster whose ACLs were never bootstrapped.
    #[tokio::test]
    async fn snapshots_carry_the_acl_state_and_its_past_and_formats_2_and_3_still_load() {
        use crate::acl::{AclCommand, Credential, SecretHash};
        let disk = Arc::new(SimDisk::new(4));
        let files = files(&disk);
        let mut state = state_with(3);
        let bootstrap = AclCommand::Bootstrap { accessor: "root".into(), secret: SecretHash::of("root") };
        state.apply(
            4,
            &Request { tag: None, proposed_at_ms: 0, command: Command::Acl(bootstrap) },
            InjectedBugs::default(),
        );
        let file = files.write(&meta(4), &state).await.unwrap();
        let (_, loaded) = files.load(&file).await.unwrap();
        assert!(loaded.acl().enabled());
        assert!(loaded.authority(&Credential::from_secret("root")).is_ok_and(|authority| authority.manages_acl()));
        assert_eq!(loaded.authority(&Credential::Anonymous).err(), Some(crate::acl::Denial::Unauthenticated));
        assert_eq!(loaded.acl_past(), state.acl_past(), "the state before the bootstrap governed mutations 1-3");
        assert!(matches!(loaded.acl_past().governing(3), crate::acl::Governed::Past { .. }));

        let format_3 = (meta(4), &state, Some(ClusterId(7)), state.acl());
        let old_body = bincode::serde::encode_to_vec(format_3, bincode::config::standard()).unwrap();
        let mut old = Vec::new();
        old.extend_from_slice(&MAGIC);
        old.extend_from_slice(&FORMAT_WITHOUT_ACL_PAST.to_le_bytes());
        old.extend_from_slice(&crc32c::crc32c(&old_body).to_le_bytes());
        old.extend_from_slice(&(old_body.len() as u64).to_le_bytes());
        old.extend_from_slice(&old_body);
        let old_path = PathBuf::from("/snapshots/format-3.snap");
        disk.write_at(&old_path, 0, &old).unwrap();
        let (_, loaded) = files.load(&SnapshotFile { path: old_path }).await.unwrap();
        assert!(loaded.acl().enabled());
        assert!(
            matches!(loaded.acl_past().governing(3), crate::acl::Governed::Unknown),
            "without their past, events before the restored revision are unknown"
        );
        assert!(matches!(loaded.acl_past().governing(4), crate::acl::Governed::Current));

        let old_body =
            bincode::serde::encode_to_vec((meta(3), state_with(3), Some(ClusterId(7))), bincode::config::standard())
                .unwrap();
        let mut old = Vec::new();
        old.extend_from_slice(&MAGIC);
        old.extend_from_slice(&FORMAT_WITHOUT_ACL.to_le_bytes());
        old.extend_from_slice(&crc32c::crc32c(&old_body).to_le_bytes());
        old.extend_from_slice(&(old_body.len() as u64).to_le_bytes());
        old.extend_from_slice(&old_body);
        let old_path = PathBuf::from("/snapshots/format-2.snap");
        disk.write_at(&old_path, 0, &old).unwrap();
        let (_, loaded) = files.load(&SnapshotFile { path: old_path }).await.unwrap();
        assert!(!loaded.acl().enabled());
        assert_eq!(loaded.cluster_id(), Some(ClusterId(7)));
        assert_eq!(loaded.len(), 3);
    }
}
