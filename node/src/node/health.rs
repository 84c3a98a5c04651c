//! Liveness and readiness, as Kubernetes probes ask for them (etcd's `/livez` and `/readyz`):
//! alive while the process serves and its store answers; ready while it can serve linearizable
//! reads now.

use crate::acl::Credential;
use crate::api::Role;
use crate::rt::{self, Duration};

use super::Node;

/// How long the store may take to answer the liveness probe.
const STORE_ANSWER_MAX: Duration = Duration::from_secs(1);

/// One readiness or liveness check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    /// What was found, for an operator reading `?verbose`.
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, passed: bool, detail: String) -> Check {
        Check { name, passed, detail }
    }
}

impl Node {
    /// Whether the process serves: it is not shutting down, and its store actor answers within
    /// [`STORE_ANSWER_MAX`] (a wedged store fails it, which a restart may cure).
    pub async fn liveness(&self) -> Vec<Check> {
        let stopping = *self.inner.shutdown.borrow();
        let answered = rt::timeout(STORE_ANSWER_MAX, self.inner.store.authorize(Credential::Anonymous)).await;
        let store = match answered {
            Ok(Ok(_)) => Check::new("store", true, "the store answers".to_string()),
            Ok(Err(_)) => Check::new("store", false, "the store has stopped".to_string()),
            Err(_) => Check::new("store", false, format!("the store did not answer within {STORE_ANSWER_MAX:?}")),
        };
        let serving = match stopping {
            true => Check::new("serving", false, "the node is shutting down".to_string()),
            false => Check::new("serving", true, "the node is running".to_string()),
        };
        vec![serving, store]
    }

    /// Whether this node can serve linearizable reads now: it is a member, knows a leader, holds
    /// every write a leader acknowledged up to a moment ago (for a leader, a quorum answered it
    /// recently; for the others, a proven contact with a leader that they have applied), and
    /// its log's disk is not stalled.
    pub fn readiness(&self) -> Vec<Check> {
        let metrics = self.metrics();
        let role = self.role(&metrics);
        let member = !matches!(role, Role::Removed | Role::Detached | Role::Shutdown);
        let recent = self.inner.config.timings.election_timeout_max * 2;
        let contact = self.leader_contact().map(|at| at.elapsed());
        let stalled = self.inner.durability.stalled();
        vec![
            Check::new("member", member, format!("role {role:?}").to_lowercase()),
            Check::new(
                "leader",
                metrics.current_leader.is_some(),
                metrics.current_leader.map_or_else(|| "no leader known".to_string(), |id| format!("node {id} leads")),
            ),
            Check::new(
                "leader_contact",
                contact.is_some_and(|age| age <= recent),
                match contact {
                    Some(age) => format!("holds every write acknowledged until {} ms ago", age.as_millis()),
                    None => "no proven contact with a leader since start".to_string(),
                },
            ),
            Check::new(
                "disk",
                stalled.is_none(),
                stalled
                    .map_or_else(|| "the log is written".to_string(), |error| format!("the log is stalled: {error}")),
            ),
        ]
    }
}
