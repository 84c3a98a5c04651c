//! openraft's storage conformance suite, run against cairn's log store and state machine on
//! both disks: the simulated one and the real file system.

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

use crate::bugs::InjectedBugs;
use crate::metrics::{Metrics, WalMetrics};
use crate::raft::TypeConfig;
use crate::raft::log_store::LogStore;
use crate::raft::state_machine::StateMachine;
use crate::rt;
use crate::storage::{Disk, FsDisk, SimDisk};
use crate::store::StoreHandle;
use crate::store::snapshot::SnapshotFiles;

/// Builds a fresh node's storage for every test of the suite. The simulated nodes share one
/// simulated disk (in directories of their own), as nodes on the real file system share it:
/// the suite hands a snapshot file built by one store to another.
struct FreshStorage {
    sim_disk: Option<Arc<SimDisk>>,
    built: std::sync::atomic::AtomicU64,
}

async fn open(disk: Arc<dyn Disk>, dir: std::path::PathBuf) -> (LogStore, StateMachine) {
    let log = LogStore::open(disk.clone(), dir.join("raft"), InjectedBugs::default(), WalMetrics::default())
        .await
        .expect("the log opens");
    let snapshots = Arc::new(SnapshotFiles::open(disk, dir.join("snapshots")).expect("the snapshot directory opens"));
    let store = StoreHandle::spawn(1, 1_000, crate::store::events::HistoryLimits::default(), InjectedBugs::default());
    (log, StateMachine::new(store, snapshots, Arc::new(Metrics::new())))
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Option<tempfile::TempDir>> for FreshStorage {
    async fn build(&self) -> Result<(Option<tempfile::TempDir>, LogStore, StateMachine), StorageError<TypeConfig>> {
        match &self.sim_disk {
            Some(disk) => {
                let node = self.built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (log, sm) = open(disk.clone(), format!("/node-{node}").into()).await;
                Ok((None, log, sm))
            }
            None => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let (log, sm) = open(Arc::new(FsDisk::new()), dir.path().to_path_buf()).await;
                Ok((Some(dir), log, sm))
            }
        }
    }
}

#[tokio::test]
async fn log_store_and_state_machine_pass_openraft_suite_on_the_simulated_disk() {
    let disk = Arc::new(SimDisk::new(rt::random_u64()));
    let builder = FreshStorage { sim_disk: Some(disk), built: Default::default() };
    Suite::test_all(builder).await.expect("the suite passes");
}

#[tokio::test]
async fn log_store_and_state_machine_pass_openraft_suite_on_the_file_system() {
    Suite::test_all(FreshStorage { sim_disk: None, built: Default::default() }).await.expect("the suite passes");
}
