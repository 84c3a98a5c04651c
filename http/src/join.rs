//! `--join`: ask any member to add this node, until it is a voter (a learner with `--learner`).
//! The request goes to whichever member answers; that member hands it to the leader, which adds
//! this node as a learner and, unless it joins as one, promotes it once it has caught up. Joining is idempotent by id, so a restarted node that is
//! still a learner simply asks again, and a voter never asks.
//!
//! A join address may also be a member's gossip address: it is announced to as a gossip seed
//! (see `cairn serve`), and every attempt also asks the HTTP addresses of the members gossip has
//! shown this node since, so the request reaches the cluster even when no HTTP address was given.

use cairn_node::Node;
use cairn_node::acl::TokenSecret;
use cairn_node::api::{MemberKind, Role};
use cairn_node::rt::{self, Duration};
use cairn_node::tls::ClientTls;

use crate::client::{CairnClient, ClientError, ClientOptions, Route};

const RETRY_PAUSE_MIN: Duration = Duration::from_millis(200);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Runs until this node is a member of `kind` (a voter also satisfies a learner), or a member
/// refuses it for good (its id was retired or is taken by other addresses), which is logged as
/// an error.
pub async fn join_cluster(
    node: Node,
    seeds: Vec<String>,
    kind: MemberKind,
    tls: Option<ClientTls>,
    token: Option<TokenSecret>,
) {
    let member = node.config().member.clone();
    let mut pause = RETRY_PAUSE_MIN;
    while !has_joined(&node, kind) {
        let endpoints = endpoints(&node, &seeds).await;
        let client = CairnClient::with_tls(
            endpoints.clone(),
            ClientOptions { attempt_timeout: Duration::from_secs(20), call_timeout: Duration::from_secs(30) },
            tls.clone(),
        )
        .with_token_secret(token.as_ref());
        // One attempt per address: a gossip address refuses TCP at once, and a call allowed to
        // retry would spend its whole time on it before gossip could offer a member's HTTP one.
        let mut failures = Vec::new();
        for (index, endpoint) in endpoints.iter().enumerate() {
            match client.add_member(Route::Only(index), node.id(), &member, kind).await {
                Ok(_) => {
                    tracing::info!(id = node.id(), via = %endpoint, "joined the cluster");
                    failures.clear();
                    pause = RETRY_PAUSE_MIN;
                    break;
                }
                Err(ClientError::Rejected { code, message, .. })
                    if matches!(code.as_str(), "member_id_retired" | "member_conflict") =>
                {
                    tracing::error!(id = node.id(), %code, %message, "the cluster refused this node; not joining");
                    return;
                }
                Err(error) => failures.push(format!("{endpoint}: {error}")),
            }
        }
        if !failures.is_empty() {
            tracing::warn!(id = node.id(), failures = %failures.join("; "), "join attempt failed; retrying");
        }
        rt::sleep(pause).await;
        pause = (pause * 2).min(RETRY_PAUSE_MAX);
    }
}

/// The join addresses, then the HTTP address of every other member gossip knows.
async fn endpoints(node: &Node, seeds: &[String]) -> Vec<String> {
    let mut endpoints = seeds.to_vec();
    if let Some(view) = node.gossip_view().await {
        let learned = view.members.into_iter().filter(|member| member.identity.id != node.id());
        for http in learned.map(|member| member.identity.http) {
            if !endpoints.contains(&http) {
                endpoints.push(http);
            }
        }
    }
    endpoints
}

fn has_joined(node: &Node, kind: MemberKind) -> bool {
    let id = node.id();
    let Some(me) = node.members().into_iter().find(|member| member.id == id) else { return false };
    match kind {
        MemberKind::Voter => me.voter && matches!(node.status().role, Role::Leader | Role::Follower | Role::Candidate),
        MemberKind::Learner => {
            matches!(node.status().role, Role::Learner | Role::Leader | Role::Follower | Role::Candidate)
        }
    }
}
