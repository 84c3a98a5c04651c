//! Watchers: processes that watch every key from revision 1 on, each through one node at a time,
//! hopping to another node now and then and resuming at the revision after the last change they
//! saw, as a config-center client does. Every resume, delivered change and compaction refusal is
//! recorded as a `watch:N` line for the watch checker.

use cairn_http::client::{CairnClient, ClientError, Route, WatchItem, WatchStream};
use cairn_node::rt::{self, Duration, Instant, watch};

use crate::generate::Rng;
use crate::history::{WatchAction, WatchEvent, WatchKind};
use crate::recorder::Recorder;

/// How long a watcher stays on one node before hopping: long enough to see many changes, short
/// enough to resume several times per run and to leave a partitioned node soon.
const CONNECTION_MIN: Duration = Duration::from_millis(300);
const CONNECTION_MAX: Duration = Duration::from_millis(3_000);
/// The pause after a failed or refused connection attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs watcher `index` until `stop` turns true.
pub async fn run_watcher(
    index: u64,
    client: CairnClient,
    recorder: Recorder,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = Rng::new(seed ^ (index + 1).wrapping_mul(0xc2b2_ae3d_27d4_eb4f));
    let nodes = client.endpoints().len() as u64;
    let mut next = 1;
    while !*stop.borrow_and_update() {
        let node = rng.range(0, nodes - 1) as usize;
        let connected_for =
            Duration::from_millis(rng.range(CONNECTION_MIN.as_millis() as u64, CONNECTION_MAX.as_millis() as u64));
        let line = |revision, node, kind| WatchEvent { watcher: index, revision, node, kind };
        match client.watch(Route::Only(node), "", &[], Some(next)).await {
            Ok(mut stream) => {
                recorder.watch(line(next, stream.node, WatchKind::Resume { prefix: String::new() }));
                let deadline = Instant::now() + connected_for;
                next = follow(&mut stream, &recorder, index, next, deadline, &mut stop).await;
            }
            Err(ClientError::Compacted { oldest }) => {
                recorder.watch(line(next, None, WatchKind::Resume { prefix: String::new() }));
                recorder.watch(line(next, None, WatchKind::Compacted { compact_revision: Some(oldest) }));
                next = oldest;
                rt::sleep(RETRY_PAUSE).await;
            }
            Err(_) => rt::sleep(RETRY_PAUSE).await,
        }
    }
}

/// Records what `stream` delivers until `deadline`, `stop` or the stream ends; returns the
/// revision to resume at.
async fn follow(
    stream: &mut WatchStream,
    recorder: &Recorder,
    watcher: u64,
    mut next: u64,
    deadline: Instant,
    stop: &mut watch::Receiver<bool>,
) -> u64 {
    let node = stream.node;
    loop {
        let item = tokio::select! {
            biased;
            _ = stop.changed() => return next,
            item = rt::timeout_at(deadline, stream.next()) => item,
        };
        let Ok(Ok(Some(item))) = item else { return next };
        match item {
            WatchItem::Event(event) => {
                // A put that came without its record is recorded with an empty value, which no
                // client writes, so the checker reports it.
                let action = match event.action.as_str() {
                    "delete" => WatchAction::Delete,
                    _ => WatchAction::Put(event.record.map(|record| record.value).unwrap_or_default()),
                };
                let kind = WatchKind::Event { key: event.key, action };
                recorder.watch(WatchEvent { watcher, revision: event.revision, node, kind });
                next = next.max(event.revision + 1);
            }
            WatchItem::Progress(_) => {}
            WatchItem::Compacted { revision, oldest } => {
                let kind = WatchKind::Compacted { compact_revision: Some(oldest) };
                recorder.watch(WatchEvent { watcher, revision, node, kind });
                return oldest;
            }
            // Chaos clients run without ACLs; a refusal would end the stream like a drop.
            WatchItem::Denied { .. } => return next,
        }
    }
}
