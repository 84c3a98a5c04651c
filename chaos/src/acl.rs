//! Access control under faults: ACLs are bootstrapped before the clients start (an `anonymous`
//! policy lets every ordinary client, watcher and probe on as before), restricted clients run
//! the ordinary workload with a token of the `restricted` policy, and a changer flips that
//! policy between wide (write on every key) and narrow (read `k0` only) while the nemesis
//! works, and a restricted watcher watches every key with that token. Afterwards [`check`]
//! proves from the history that no restricted read was answered with a key, no restricted
//! mutation applied, and no event was shown to the restricted watcher, that the policy did not
//! allow where the answer was served, the mutation applied, or the event was written.
//!
//! ACL changes do not move the store revision, so each one is placed by revision: a change
//! answered at revision `r` sits in the log after mutation `r` and before `r + 1`. A read served
//! at revision `R` includes every change at `r < R` and none at `r > R`, and may or may not
//! include one at `r == R`; a mutation at revision `W` comes after every change at `r < W`. A
//! change whose outcome was unknown is retried until it is acknowledged, so each change is
//! known to lie between the revision its changer knew before it asked and the revision of its
//! acknowledgement.

use std::sync::{Arc, Mutex, PoisonError};

use cairn_http::client::{CairnClient, Route};
use cairn_http::wire::{PolicyBody, RuleBody, TokenRequestBody};
use cairn_node::acl::{ANONYMOUS, Access};
use cairn_node::api::Consistency;
use cairn_node::rt::{self, Duration, watch};

use crate::generate::Rng;
use crate::history::{Function, History, Operation, Outcome, Value, WatchKind};

/// The policy the restricted clients' token carries.
pub const RESTRICTED_POLICY: &str = "restricted";
/// The key the narrow policy still lets restricted clients read.
const NARROW_KEY: &str = "k0";
/// Restricted clients' process numbers start here (ordinary clients, the final reads and the
/// hostile client use other ranges), and stay below [`RESTRICTED_PROCESSES_END`].
pub const RESTRICTED_PROCESSES: u64 = 500_000_000;
const RESTRICTED_PROCESSES_END: u64 = 600_000_000;
/// Restricted watchers' numbers (`watch:N`) start here; ordinary watchers count from 0.
pub const RESTRICTED_WATCHERS: u64 = 500_000_000;

/// What the restricted policy allows at a point of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Write (and read) every key.
    Wide,
    /// Read `k0`, nothing else.
    Narrow,
}

impl Grant {
    fn policy(self) -> PolicyBody {
        let rule = match self {
            Grant::Wide => RuleBody { prefix: Some(String::new()), project: None, access: Access::Write },
            Grant::Narrow => RuleBody { prefix: Some(NARROW_KEY.to_string()), project: None, access: Access::Read },
        };
        PolicyBody { name: RESTRICTED_POLICY.to_string(), rules: vec![rule], cluster: Access::Deny }
    }

    fn may_read(self, key: &str) -> bool {
        self == Grant::Wide || key == NARROW_KEY
    }

    fn may_write(self) -> bool {
        self == Grant::Wide
    }

    fn flipped(self) -> Grant {
        match self {
            Grant::Wide => Grant::Narrow,
            Grant::Narrow => Grant::Wide,
        }
    }
}

/// One change of the restricted policy, placed by revision: applied after mutation `low` at the
/// earliest and at `high` (its acknowledgement's revision) at the latest; `high` is `None` when
/// the run ended before it was acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantChange {
    /// What the policy allows once this change applied.
    pub grant: Grant,
    /// The revision its changer knew before asking: it applied after that mutation.
    pub low: u64,
    /// The revision its acknowledgement carried, if it was acknowledged.
    pub high: Option<u64>,
}

/// The changes of one run, in order (the first one creates the policy).
#[derive(Clone, Default)]
pub struct GrantLog {
    changes: Arc<Mutex<Vec<GrantChange>>>,
}

impl GrantLog {
    fn push(&self, change: GrantChange) {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner).push(change);
    }

    /// The changes so far, in the order they were made.
    pub fn changes(&self) -> Vec<GrantChange> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// What the ACL part of a run did and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclCounts {
    /// Acknowledged changes of the restricted policy.
    pub changes: u64,
    /// Restricted operations answered `ok` and checked against the policy.
    pub checked: u64,
    /// Restricted operations refused (401 or 403).
    pub refused: u64,
    /// Events shown to restricted watchers, each checked against the policy.
    pub watched: u64,
    /// Answers the policy did not allow, each with where it is in the history.
    pub violations: Vec<String>,
}

/// The secrets a run's clients use once ACLs are on.
pub struct AclSetup {
    /// The management token's secret (the changer's).
    pub management: String,
    /// The restricted clients' token's secret.
    pub restricted: String,
}

/// Bootstraps ACLs on a healthy cluster: the management token, an `anonymous` policy that
/// allows everything (so tokenless clients go on as before), the restricted policy (wide) and
/// its token. Logs the policy's creation as the first change.
pub async fn set_up(
    client: &CairnClient,
    with_token: impl Fn(&str) -> CairnClient,
    log: &GrantLog,
) -> Result<AclSetup, String> {
    let root = client.acl_bootstrap(Route::Any).await.map_err(|e| format!("the ACL bootstrap failed: {e}"))?;
    let management = with_token(&root.secret);
    let everything = RuleBody { prefix: Some(String::new()), project: None, access: Access::Write };
    let anonymous = PolicyBody { name: ANONYMOUS.to_string(), rules: vec![everything], cluster: Access::Write };
    management.acl_put_policy(Route::Any, &anonymous, false).await.map_err(|e| format!("anonymous policy: {e}"))?;
    let created = management
        .acl_put_policy(Route::Any, &Grant::Wide.policy(), false)
        .await
        .map_err(|e| format!("restricted policy: {e}"))?;
    log.push(GrantChange { grant: Grant::Wide, low: 0, high: Some(created.revision) });
    let token = TokenRequestBody { policies: vec![RESTRICTED_POLICY.to_string()], description: "chaos".into() };
    let restricted =
        management.acl_create_token(Route::Any, &token).await.map_err(|e| format!("restricted token: {e}"))?;
    Ok(AclSetup { management: root.secret, restricted: restricted.secret })
}

/// Flips the restricted policy every 0.2 to 1 s until `stop`, retrying each change until it is
/// acknowledged, and logs each one. Before each change a linearizable read learns the revision
/// the cluster has reached, so the change is placed after it: without that bound a change
/// could lie anywhere since the previous one, and the check would prove nothing.
pub async fn run_changer(management: CairnClient, log: GrantLog, seed: u64, mut stop: watch::Receiver<bool>) {
    let mut rng = Rng::new(seed ^ 0x00ac_1c4a_46e5);
    let mut grant = Grant::Wide;
    let mut known = log.changes().last().and_then(|change| change.high).unwrap_or(0);
    while !*stop.borrow_and_update() {
        rt::sleep(Duration::from_millis(rng.range(200, 1_000))).await;
        if let Ok(read) = management.get(Route::Any, NARROW_KEY, Consistency::Linearizable).await {
            known = known.max(read.revision);
        }
        grant = grant.flipped();
        let low = known;
        let high = loop {
            if *stop.borrow_and_update() {
                break None;
            }
            match management.acl_put_policy(Route::Any, &grant.policy(), true).await {
                Ok(answer) => break Some(answer.revision),
                // Tagged: an attempt that lands late, after a newer change of this client, is
                // refused as superseded, so changes apply in the order they were made.
                Err(_) => rt::sleep(Duration::from_millis(100)).await,
            }
        };
        log.push(GrantChange { grant, low, high });
        known = high.unwrap_or(known);
    }
}

/// Whether `process` is one of the restricted clients.
pub fn is_restricted(process: u64) -> bool {
    (RESTRICTED_PROCESSES..RESTRICTED_PROCESSES_END).contains(&process)
}

/// Whether watcher `watcher` is one of the restricted watchers.
pub fn is_restricted_watcher(watcher: u64) -> bool {
    watcher >= RESTRICTED_WATCHERS
}

/// Checks every restricted operation and every event shown to a restricted watcher of
/// `history` against the policy changes.
pub fn check(history: &History, changes: &[GrantChange]) -> AclCounts {
    let mut counts = AclCounts {
        changes: changes.iter().filter(|change| change.high.is_some()).count() as u64,
        ..AclCounts::default()
    };
    for operation in history.operations.iter().filter(|operation| is_restricted(operation.process)) {
        if operation.outcome == Outcome::Fail
            && matches!(operation.error.as_deref(), Some("permission_denied" | "unauthenticated"))
        {
            counts.refused += 1;
        }
        if operation.outcome != Outcome::Ok {
            continue;
        }
        let Some(revision) = operation.revision else { continue };
        counts.checked += 1;
        if let Some(violation) = judge(operation, revision, changes) {
            counts.violations.push(violation);
        }
    }
    for line in history.watch_lines.iter().filter(|line| is_restricted_watcher(line.event.watcher)) {
        let WatchKind::Event { key, .. } = &line.event.kind else { continue };
        let revision = line.event.revision;
        counts.watched += 1;
        let grants = grants_before_mutation(changes, revision);
        if !grants.iter().any(|grant| grant.may_read(key)) {
            counts.violations.push(format!(
                "restricted watcher {} was shown {key} at revision {revision} (line {}), which the restricted policy \
                 ({grants:?} there) did not allow",
                line.event.watcher, line.line,
            ));
        }
    }
    counts
}

/// Why `operation`, answered at `revision`, was not allowed, if it was not.
fn judge(operation: &Operation, revision: u64, changes: &[GrantChange]) -> Option<String> {
    let mutated = match operation.f {
        Function::Read => false,
        Function::Delete => operation.output == Value::Deleted(true),
        Function::Write | Function::Cas => true,
    };
    let grants = if mutated { grants_before_mutation(changes, revision) } else { grants_at_state(changes, revision) };
    let allowed = match operation.f {
        Function::Read => grants.iter().any(|grant| grant.may_read(&operation.key)),
        Function::Write | Function::Cas | Function::Delete => grants.iter().any(|grant| grant.may_write()),
    };
    (!allowed).then(|| {
        let what = if operation.f == Function::Read { "read" } else { "changed" };
        format!(
            "restricted process {} {what} {} at revision {revision} (line {}), which the restricted policy ({:?} \
             there) did not allow",
            operation.process,
            operation.key,
            operation.complete_line.unwrap_or(operation.invoke_line),
            grants,
        )
    })
}

/// The grants a state served at `revision` may have had: the last change certainly before it,
/// and every change that may or may not be.
fn grants_at_state(changes: &[GrantChange], revision: u64) -> Vec<Grant> {
    possible(changes, |change| change.high.is_some_and(|high| high < revision), |change| change.low > revision)
}

/// The grants in force where a mutation at `revision` applied.
fn grants_before_mutation(changes: &[GrantChange], revision: u64) -> Vec<Grant> {
    possible(changes, |change| change.high.is_some_and(|high| high < revision), |change| change.low >= revision)
}

fn possible(
    changes: &[GrantChange],
    certainly_before: impl Fn(&GrantChange) -> bool,
    certainly_after: impl Fn(&GrantChange) -> bool,
) -> Vec<Grant> {
    let mut grants: Vec<Grant> =
        changes.iter().rev().find(|change| certainly_before(change)).map(|change| change.grant).into_iter().collect();
    for change in changes.iter().filter(|change| !certainly_before(change) && !certainly_after(change)) {
        if !grants.contains(&change.grant) {
            grants.push(change.grant);
        }
    }
    grants
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(grant: Grant, low: u64, high: u64) -> GrantChange {
        GrantChange { grant, low, high: Some(high) }
    }

    #[test]
    fn a_change_is_placed_by_revision_and_ties_are_both_ways() {
        let changes = [change(Grant::Wide, 0, 3), change(Grant::Narrow, 3, 10), change(Grant::Wide, 10, 20)];
        assert_eq!(grants_at_state(&changes, 2), [Grant::Wide]);
        assert_eq!(grants_at_state(&changes, 5), [Grant::Wide, Grant::Narrow], "the narrowing may lie before or after");
        assert_eq!(grants_at_state(&changes, 11), [Grant::Narrow, Grant::Wide]);
        assert_eq!(grants_at_state(&changes, 21), [Grant::Wide]);
        let settled = [change(Grant::Wide, 0, 3), change(Grant::Narrow, 4, 5), change(Grant::Wide, 9, 9)];
        assert_eq!(grants_at_state(&settled, 7), [Grant::Narrow], "certainly narrow between 5 and 9");
        assert_eq!(
            grants_at_state(&settled, 9),
            [Grant::Narrow, Grant::Wide],
            "a change at 9 may precede a state at 9"
        );
        assert_eq!(grants_before_mutation(&settled, 9), [Grant::Narrow], "but never the mutation at 9 itself");
        assert_eq!(grants_before_mutation(&settled, 10), [Grant::Wide]);
        let pending = [change(Grant::Wide, 0, 3), GrantChange { grant: Grant::Narrow, low: 6, high: None }];
        assert_eq!(
            grants_at_state(&pending, 100),
            [Grant::Wide, Grant::Narrow],
            "an unacknowledged change may apply late"
        );
    }
}
