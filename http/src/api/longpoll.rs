//! Long polling (kie and Consul style): hold a request until something it watches changes after
//! a revision, or until its wait runs out. The change is looked up in this node's event history,
//! so a node that is behind waits until it has applied past the client's revision: a long poll
//! never answers with data older than the revision it was given.

use cairn_node::Node;
use cairn_node::acl::Credential;
use cairn_node::rt::{self, Duration, Instant};
use cairn_node::store::filter::Filter;

use super::error::ApiError;

/// How a wait ended.
pub enum Waited {
    /// Something matching changed after the revision (or the history no longer reaches back
    /// that far, which is answered the same way: with fresh data).
    Changed,
    /// Nothing changed before the wait ran out.
    TimedOut,
}

/// Waits up to `wait` for a change matching `filter` that `credential` may read after revision
/// `since`. The credential is checked again after every apply on this node (an ACL change is an
/// apply), so a revoked token's long poll ends as soon as the node applies the revocation.
pub async fn wait_for_change(
    node: &Node,
    filter: &Filter,
    since: u64,
    wait: Duration,
    credential: Credential,
) -> Result<Waited, ApiError> {
    let _waiting = node.metrics_registry().long_poll();
    let deadline = Instant::now() + wait;
    let mut progress = node.store_progress();
    loop {
        // Mark the current progress seen before looking, so an apply in between wakes the wait.
        drop(progress.borrow_and_update());
        match node.changed_after(since, filter.clone(), credential).await? {
            Ok(true) | Err(_) => return Ok(Waited::Changed),
            Ok(false) => {}
        }
        match rt::timeout_at(deadline, progress.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ApiError::from(cairn_node::api::NodeError::ShuttingDown)),
            Err(_) => return Ok(Waited::TimedOut),
        }
    }
}
