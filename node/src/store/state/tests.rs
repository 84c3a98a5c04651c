use super::*;
use crate::acl::AclOutcome;
use crate::command::ClientTag;

fn put(key: &str, value: &str, expect: Precondition) -> Request {
    Request {
        tag: None,
        proposed_at_ms: 1_000,
        command: Command::Put {
            key: key.into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            labels: None,
            expect,
        },
    }
}

fn delete(key: &str) -> Request {
    Request {
        tag: None,
        proposed_at_ms: 1_000,
        command: Command::Delete { key: key.into(), expect: Precondition::Always },
    }
}

fn tagged(mut request: Request, client: u128, serial: u64) -> Request {
    request.tag = Some(ClientTag { client, serial });
    request
}

fn put_record(response: Response) -> Record {
    match response {
        Response::Put { record, .. } => record,
        other => panic!("expected a put, got {other:?}"),
    }
}

#[test]
fn puts_count_revisions_and_versions_like_etcd() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    let a = put_record(state.apply(1, &put("a", "1", Precondition::Always), bugs));
    let b = put_record(state.apply(2, &put("b", "1", Precondition::Always), bugs));
    let a2 = put_record(state.apply(3, &put("a", "2", Precondition::Always), bugs));
    assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 1, 1));
    assert_eq!((b.create_revision, b.mod_revision, b.version), (2, 2, 1));
    assert_eq!((a2.create_revision, a2.mod_revision, a2.version), (1, 3, 2));
    assert_eq!(state.revision(), 3);
}

#[test]
fn a_delete_resets_the_incarnation_and_deleting_nothing_keeps_the_revision() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    state.apply(1, &put("a", "1", Precondition::Always), bugs);
    let deleted = state.apply(2, &delete("a"), bugs);
    assert!(matches!(deleted, Response::Delete { deleted: Some(_), revision: 2 }));
    let nothing = state.apply(3, &delete("a"), bugs);
    assert_eq!(nothing, Response::Delete { deleted: None, revision: 2 });
    let again = put_record(state.apply(4, &put("a", "2", Precondition::Always), bugs));
    assert_eq!((again.create_revision, again.version), (3, 1));
}

#[test]
fn compare_and_swap_checks_the_mod_revision_and_zero_means_absent() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    let created = state.apply(1, &put("a", "1", Precondition::ModRevision(0)), bugs);
    assert_eq!(put_record(created).mod_revision, 1);
    let refused = state.apply(2, &put("a", "2", Precondition::ModRevision(0)), bugs);
    assert!(matches!(refused, Response::Mismatch { current: Some(_), revision: 1 }));
    let swapped = state.apply(3, &put("a", "3", Precondition::ModRevision(1)), bugs);
    assert_eq!(put_record(swapped).value, "3");
}

#[test]
fn a_retried_request_is_applied_once_and_answered_the_same() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    let request = tagged(put("a", "1", Precondition::Always), 7, 1);
    let first = state.apply(1, &request, bugs);
    state.apply(2, &put("a", "2", Precondition::Always), bugs);
    let retry = state.apply(3, &request, bugs);
    assert_eq!(put_record(retry).mod_revision, put_record(first).mod_revision);
    assert_eq!(state.get("a").unwrap().value, "2", "the retry did not overwrite");
    assert_eq!(state.revision(), 2);
}

#[test]
fn the_skip_dedup_bug_applies_a_retry_twice() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs { skip_dedup: true, ..InjectedBugs::default() };
    let request = tagged(put("a", "1", Precondition::Always), 7, 1);
    state.apply(1, &request, bugs);
    state.apply(2, &request, bugs);
    assert_eq!(state.revision(), 2);
}

#[test]
fn a_retry_older_than_the_clients_last_request_is_superseded() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    state.apply(1, &tagged(put("a", "1", Precondition::Always), 7, 2), bugs);
    let stale = state.apply(2, &tagged(put("a", "0", Precondition::Always), 7, 1), bugs);
    assert_eq!(stale, Response::Superseded { revision: 1 });
}

/// Goal: the probe's poison pill. A put and a delete of one key under one tag once panicked
/// every replica's `apply`, for good. The delete must be refused and change nothing, and a retry
/// of the put must still get the put's answer.
#[test]
fn a_tag_reused_for_a_different_request_is_refused_and_changes_nothing() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    let first_put = tagged(put("a", "1", Precondition::Always), 42, 1);
    let first = state.apply(1, &first_put, bugs);
    let before = state.clone();
    for (index, reuse) in [
        tagged(delete("a"), 42, 1),
        tagged(put("b", "1", Precondition::Always), 42, 1),
        tagged(put("a", "2", Precondition::Always), 42, 1),
        tagged(put("a", "1", Precondition::ModRevision(1)), 42, 1),
        tagged(kie_create("id-1", "timeout", &[]), 42, 1),
    ]
    .iter()
    .zip(2..)
    .map(|(request, index)| (index, request))
    {
        assert_eq!(state.apply(index, reuse, bugs), Response::TagReused { revision: 1 }, "{reuse}");
        assert_eq!(state, before, "a refused request changes nothing: {reuse}");
    }
    assert_eq!(state.get("b"), None, "no record is made up for a key never written");
    assert_eq!(state.apply(9, &first_put, bugs), first, "a true retry still gets the first answer");
}

/// Goal: a record under the kie prefix without kie fields (a native write, possible from an
/// older or hostile proposer) once made every later kie update panic. It is no kie kv.
#[test]
fn a_kie_update_of_a_record_without_kie_fields_finds_no_kv() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    state.apply(1, &put(".kie/default/id-1", "raw", Precondition::Always), bugs);
    let update = Request {
        tag: None,
        proposed_at_ms: 1_000,
        command: Command::KieUpdate { project: "default".into(), id: "id-1".into(), value: None, status: None },
    };
    assert_eq!(state.apply(2, &update, bugs), Response::KieNotFound { revision: 1 });
}

fn labelled(key: &str, value: &str, labels: &[(&str, &str)]) -> Request {
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Request {
        tag: None,
        proposed_at_ms: 1_000,
        command: Command::Put {
            key: key.into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            labels: Some(labels),
            expect: Precondition::Always,
        },
    }
}

fn kie_create(id: &str, key: &str, labels: &[(&str, &str)]) -> Request {
    Request {
        tag: None,
        proposed_at_ms: 5_000,
        command: Command::KieCreate {
            project: "default".into(),
            id: id.into(),
            key: key.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            value: Bytes::from("1s"),
            value_type: "text".into(),
            status: "enabled".into(),
        },
    }
}

#[test]
fn every_mutation_is_an_event_in_revision_order() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    state.apply(1, &put("a", "1", Precondition::Always), bugs);
    state.apply(2, &put("b", "1", Precondition::Always), bugs);
    state.apply(3, &delete("a"), bugs);
    state.apply(4, &delete("a"), bugs);
    let events = state.events_since(1, &Filter::default(), 10, &open_reader(&Authority::Open)).unwrap();
    let summary: Vec<(u64, Action, &str)> = events.iter().map(|e| (e.revision, e.action, &*e.record.key)).collect();
    assert_eq!(summary, [(1, Action::Put, "a"), (2, Action::Put, "b"), (3, Action::Delete, "a")]);
    assert!(events[2].record.value.is_empty(), "a delete event carries no value");
}

#[test]
fn listing_filters_by_prefix_and_labels_and_pages_in_key_order() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    for (index, key) in ["cfg/a", "cfg/b", "cfg/c", "cfg/d", "other"].iter().enumerate() {
        let env = if index % 2 == 0 { "prod" } else { "test" };
        state.apply(index as u64 + 1, &labelled(key, "v", &[("env", env), ("app", "order")]), bugs);
    }
    let filter = Filter { prefix: "cfg/".into(), labels: vec![("env".into(), "prod".into())], ..Filter::default() };
    let first = state.list(&filter, None, 1, &Authority::Open);
    assert_eq!((first.total, first.records.len()), (2, 1));
    assert_eq!(&*first.records[0].key, "cfg/a");
    let second = state.list(&filter, first.next.as_deref(), 1, &Authority::Open);
    assert_eq!(&*second.records[0].key, "cfg/c");
    assert_eq!(second.next, None);
    let exact = Filter { labels: vec![("env".into(), "prod".into())], exact_labels: true, ..Filter::default() };
    assert_eq!(state.list(&exact, None, 10, &Authority::Open).total, 0, "exact matching needs the same label set");
}

#[test]
fn a_kie_kv_is_unique_by_project_key_and_labels() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    let created = state.apply(1, &kie_create("id-1", "timeout", &[("app", "default")]), bugs);
    let Response::KieWritten { record, .. } = created else { panic!("created: {created:?}") };
    assert_eq!(&*record.key, ".kie/default/id-1");
    assert_eq!(record.kie.as_ref().unwrap().status, "enabled");
    let again = state.apply(2, &kie_create("id-2", "timeout", &[("app", "default")]), bugs);
    assert_eq!(again, Response::KieExists { id: "id-1".into(), revision: 1 });
    let other_labels = state.apply(3, &kie_create("id-3", "timeout", &[("app", "other")]), bugs);
    assert!(matches!(other_labels, Response::KieWritten { .. }));
}

#[test]
fn a_kie_update_keeps_identity_and_a_batch_delete_counts_each_kv() {
    let mut state = KvState::new(16, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    state.apply(1, &kie_create("id-1", "timeout", &[("app", "default")]), bugs);
    state.apply(2, &kie_create("id-2", "retries", &[("app", "default")]), bugs);
    let update = Request {
        tag: None,
        proposed_at_ms: 6_000,
        command: Command::KieUpdate {
            project: "default".into(),
            id: "id-1".into(),
            value: Some(Bytes::from("2s")),
            status: None,
        },
    };
    let Response::KieWritten { record, revision } = state.apply(3, &update, bugs) else { panic!("updated") };
    assert_eq!((record.value.as_ref(), record.create_revision, record.mod_revision, revision), (&b"2s"[..], 1, 3, 3));
    assert_eq!(record.labels.get("app").map(String::as_str), Some("default"), "labels are part of the identity");
    let delete = Request {
        tag: None,
        proposed_at_ms: 7_000,
        command: Command::KieDelete {
            project: "default".into(),
            ids: vec!["id-1".into(), "missing".into(), "id-2".into()],
        },
    };
    let deleted = state.apply(4, &delete, bugs);
    assert_eq!(deleted, Response::KieDeleted { ids: vec!["id-1".into(), "id-2".into()], revision: 5 });
    let recreated = state.apply(5, &kie_create("id-9", "timeout", &[("app", "default")]), bugs);
    assert!(matches!(recreated, Response::KieWritten { .. }), "a deleted identity is free again");
}

mod properties {
    //! Random command sequences, with tags drawn from a few clients and serials so that reuse,
    //! retries and supersession are common, and with malformed fields a hostile proposer could
    //! commit. `apply` must never panic and the store's invariants must hold after every step.
    //! Longer run: `PROPTEST_CASES=20000 cargo test -p cairn-node --lib properties`.

    use proptest::prelude::*;

    use super::*;

    fn key() -> impl Strategy<Value = Key> {
        prop_oneof![
            prop::sample::select(vec!["a", "b", "", ".kie/p/1", ".kie/p/x/y"]).prop_map(Key::from),
            "[a-c.]{0,3}".prop_map(|key| Key::from(key.as_str())),
        ]
    }

    fn labels() -> impl Strategy<Value = Labels> {
        prop::collection::btree_map("[a-b ]{0,2}", "[x\\n]{0,2}", 0..3)
    }

    fn credential() -> impl Strategy<Value = Credential> {
        prop_oneof![Just(Credential::Anonymous), (0u8..3).prop_map(|n| Credential::from_secret(&format!("s{n}")))]
    }

    fn acl_command() -> impl Strategy<Value = AclCommand> {
        use crate::acl::{Access, Policy, Rule, SecretHash};
        let accessor = || (0u8..3).prop_map(|n| format!("a{n}"));
        let secret = || (0u8..3).prop_map(|n| SecretHash::of(&format!("s{n}")));
        let name = || prop_oneof![Just("p".to_string()), Just("anonymous".to_string()), Just("management".to_string())];
        let access = || prop_oneof![Just(Access::Deny), Just(Access::Read), Just(Access::Write)];
        let rule = (prop_oneof![Just(""), Just("a"), Just("b/"), Just(".kie/")], access())
            .prop_map(|(prefix, access)| Rule { prefix: prefix.to_string(), access });
        let policy = (name(), prop::collection::vec(rule, 0..3), access()).prop_map(|(name, rules, cluster)| Policy {
            name,
            rules,
            cluster,
        });
        let names = || prop::collection::vec(name(), 0..3);
        prop_oneof![
            (accessor(), secret()).prop_map(|(accessor, secret)| AclCommand::Bootstrap { accessor, secret }),
            (policy, any::<bool>()).prop_map(|(policy, create)| AclCommand::PutPolicy { policy, create }),
            name().prop_map(|name| AclCommand::DeletePolicy { name }),
            (accessor(), secret(), names()).prop_map(|(accessor, secret, policies)| AclCommand::CreateToken {
                accessor,
                secret,
                policies,
                description: String::new()
            }),
            (accessor(), names()).prop_map(|(accessor, policies)| AclCommand::UpdateToken {
                accessor,
                policies,
                description: String::new()
            }),
            accessor().prop_map(|accessor| AclCommand::DeleteToken { accessor }),
        ]
    }

    /// Client commands, ACL changes, and either of them on behalf of a token (or a wrapper
    /// around a wrapper, which no decoder lets through but `apply` must still survive).
    fn command() -> impl Strategy<Value = Command> {
        let unwrapped = prop_oneof![4 => plain_command(), 1 => acl_command().prop_map(Command::Acl)];
        unwrapped.prop_recursive(2, 4, 1, |inner| {
            prop_oneof![
                inner.clone(),
                (credential(), inner)
                    .prop_map(|(credential, command)| Command::Authorized { credential, command: Box::new(command) }),
            ]
        })
    }

    fn plain_command() -> impl Strategy<Value = Command> {
        let text = || "[a-z\\-/.]{0,3}".prop_map(|text| Arc::<str>::from(text.as_str()));
        let value = || prop::collection::vec(any::<u8>(), 0..4).prop_map(Bytes::from);
        let expect = prop_oneof![Just(Precondition::Always), (0u64..6).prop_map(Precondition::ModRevision)];
        prop_oneof![
            (key(), value(), prop::option::of(labels()), expect.clone())
                .prop_map(|(key, value, labels, expect)| Command::Put { key, value, labels, expect }),
            (key(), expect).prop_map(|(key, expect)| Command::Delete { key, expect }),
            (0u64..4).prop_map(|id| Command::RetireNode { id }),
            (text(), text(), text(), labels(), value(), "[a-z]{0,4}", "[a-z]{0,4}").prop_map(
                |(project, id, key, labels, value, value_type, status)| Command::KieCreate {
                    project,
                    id,
                    key,
                    labels,
                    value,
                    value_type,
                    status
                }
            ),
            (text(), text(), prop::option::of(value()), prop::option::of("[a-z]{0,4}"))
                .prop_map(|(project, id, value, status)| Command::KieUpdate { project, id, value, status }),
            (text(), prop::collection::vec(text(), 0..3))
                .prop_map(|(project, ids)| Command::KieDelete { project, ids }),
        ]
    }

    fn request() -> impl Strategy<Value = Request> {
        let tag = prop::option::of((0u128..3, 0u64..4).prop_map(|(client, serial)| ClientTag { client, serial }));
        (tag, any::<u64>(), command()).prop_map(|(tag, proposed_at_ms, command)| Request {
            tag,
            proposed_at_ms,
            command,
        })
    }

    /// The store's invariants, checked from outside: the revision never decreases, a refused
    /// request changes nothing, every record is at or below the revision, every mutation is an
    /// event and the history ends at the revision.
    fn check_step(before: &KvState, after: &KvState, response: &Response) {
        assert!(after.revision() >= before.revision());
        assert_eq!(after.acl().inconsistency(), None);
        assert!(after.revision() <= before.revision() + 1 || matches!(response, Response::KieDeleted { .. }));
        let refused = matches!(
            response,
            Response::TagReused { .. }
                | Response::Superseded { .. }
                | Response::Mismatch { .. }
                | Response::Denied { .. }
        );
        if refused || matches!(response, Response::Acl { .. }) {
            assert_eq!(after.records, before.records);
            assert_eq!(after.revision(), before.revision());
        }
        for record in after.records.values() {
            assert!(record.mod_revision <= after.revision());
            assert!(record.create_revision <= record.mod_revision);
            assert!(record.version >= 1);
        }
        if after.revision() > before.revision() {
            let events = after
                .events_since(before.revision() + 1, &Filter::default(), usize::MAX, &open_reader(&Authority::Open))
                .unwrap_or_default();
            let revisions: Vec<u64> = events.iter().map(|event| event.revision).collect();
            let expected: Vec<u64> = (before.revision() + 1..=after.revision()).collect();
            assert_eq!(revisions, expected, "one event per revision, none missing");
        }
    }

    proptest! {
        #[test]
        fn any_sequence_of_commands_applies_without_panicking_and_keeps_the_invariants(
            requests in prop::collection::vec(request(), 1..60),
        ) {
            let mut state = KvState::new(4, HistoryLimits::default());
            let mut replica = KvState::new(4, HistoryLimits::default());
            for (index, request) in (1..).zip(&requests) {
                let before = state.clone();
                let response = state.apply(index, request, InjectedBugs::default());
                check_step(&before, &state, &response);
                prop_assert_eq!(replica.apply(index, request, InjectedBugs::default()), response);
            }
            prop_assert_eq!(state, replica, "every replica applies to the same state");
        }
    }
}

/// Goal: a snapshot's state is installed only if `apply` could have built it, so applying to it
/// never trips the store's assertions. Method: a state built by `apply` passes; each forgery (a
/// hostile leader can checksum anything) is named. (Forged histories and session tables are
/// tested beside them.)
#[test]
fn only_a_state_apply_could_have_built_passes_the_consistency_check() {
    let mut state = KvState::new(2, HistoryLimits { events_max: 3, bytes_max: 1 << 20 });
    let bugs = InjectedBugs::default();
    state.apply(1, &tagged(put("a", "1", Precondition::Always), 7, 1), bugs);
    state.apply(2, &tagged(put("b", "1", Precondition::Always), 8, 1), bugs);
    state.apply(3, &tagged(delete("a"), 9, 1), bugs);
    state.apply(4, &kie_create("id-1", "timeout", &[("app", "order")]), bugs);
    state.apply(5, &put("b", "2", Precondition::Always), bugs);
    assert_eq!(state.inconsistency(), None);

    let mut forged = state.clone();
    forged.revision = 1 << 63;
    assert!(forged.inconsistency().is_some(), "an exhausted revision");
    let mut forged = state.clone();
    let record = forged.records.get("b").unwrap().clone();
    forged.records.insert(".kie/default/forged".into(), Record { key: ".kie/default/forged".into(), ..record });
    assert!(forged.inconsistency().is_some(), "a kie record without kie fields");
    let mut forged = state.clone();
    forged.records.get_mut("b").unwrap().mod_revision = 99;
    assert!(forged.inconsistency().is_some(), "a record from the future");
    let mut forged = state.clone();
    forged.revision += 1;
    assert!(forged.inconsistency().is_some(), "history ending before the revision");
}

fn acl(change: AclCommand) -> Request {
    Request { tag: None, proposed_at_ms: 1_000, command: Command::Acl(change) }
}

fn as_token(secret: &str, request: Request) -> Request {
    let command =
        Command::Authorized { credential: Credential::from_secret(secret), command: Box::new(request.command) };
    Request { command, ..request }
}

/// Goal: the ACL state decides at apply time, at the entry's place in the log, so a write the
/// token was not allowed when it applied never changes anything, whatever a proposer checked
/// before. Method: bootstrap, give a token write on `app/`, then apply writes as it, as
/// nobody, and after the token's deletion.
#[test]
fn writes_are_authorized_where_they_apply_in_the_log() {
    use crate::acl::{Access, Policy, Rule, SecretHash};
    let mut state = KvState::new(4, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    let bootstrap = AclCommand::Bootstrap { accessor: "root".into(), secret: SecretHash::of("root") };
    assert!(matches!(state.apply(1, &acl(bootstrap), bugs), Response::Acl { outcome: AclOutcome::Bootstrapped, .. }));
    let policy = Policy {
        name: "app".into(),
        rules: vec![Rule { prefix: "app/".into(), access: Access::Write }],
        cluster: Access::Deny,
    };
    let unauthorized = state.apply(2, &acl(AclCommand::PutPolicy { policy: policy.clone(), create: true }), bugs);
    assert!(matches!(unauthorized, Response::Denied { denial: Denial::Unauthenticated, .. }), "{unauthorized:?}");
    let put_policy = as_token("root", acl(AclCommand::PutPolicy { policy, create: true }));
    assert!(matches!(state.apply(3, &put_policy, bugs), Response::Acl { outcome: AclOutcome::Written, .. }));
    let token = AclCommand::CreateToken {
        accessor: "t".into(),
        secret: SecretHash::of("t"),
        policies: vec!["app".into()],
        description: String::new(),
    };
    state.apply(4, &as_token("root", acl(token)), bugs);

    assert!(matches!(
        state.apply(5, &as_token("t", put("app/a", "1", Precondition::Always)), bugs),
        Response::Put { .. }
    ));
    let outside = state.apply(6, &as_token("t", put("other", "1", Precondition::Always)), bugs);
    assert!(matches!(outside, Response::Denied { denial: Denial::PermissionDenied, .. }), "{outside:?}");
    let anonymous = state.apply(7, &put("app/b", "1", Precondition::Always), bugs);
    assert!(matches!(anonymous, Response::Denied { denial: Denial::Unauthenticated, .. }), "{anonymous:?}");
    let not_management = state.apply(8, &as_token("t", acl(AclCommand::DeleteToken { accessor: "root".into() })), bugs);
    assert!(matches!(not_management, Response::Denied { denial: Denial::PermissionDenied, .. }));

    state.apply(9, &as_token("root", acl(AclCommand::DeleteToken { accessor: "t".into() })), bugs);
    let revoked = state.apply(10, &tagged(as_token("t", put("app/c", "1", Precondition::Always)), 5, 1), bugs);
    assert!(matches!(revoked, Response::Denied { denial: Denial::Unauthenticated, .. }), "{revoked:?}");
    let retried = state.apply(11, &tagged(as_token("t", put("app/c", "1", Precondition::Always)), 5, 1), bugs);
    assert_eq!(retried, revoked, "a retry is answered as the original was");
    assert_eq!(state.get("app/c"), None);
    assert_eq!(state.revision(), 1, "only the allowed write changed the store");
    assert!(matches!(
        state.apply(12, &acl(AclCommand::Bootstrap { accessor: "x".into(), secret: SecretHash::of("x") }), bugs),
        Response::Acl { outcome: AclOutcome::AlreadyBootstrapped, .. }
    ));
}

fn open_reader(authority: &Authority) -> Reader<'_> {
    Reader { credential: &Credential::Anonymous, authority, past_ignored: false }
}

/// Goal: a watch or long poll shows a limited token an event only if it may read the key now and
/// could under the ACL state the event was written under, so widening a policy does not reveal
/// what was written while it was narrow. Method: a token's policy goes wide, narrow, wide and
/// narrow between writes of one key; its events are read at each point.
#[test]
fn events_are_shown_to_a_token_that_could_read_them_where_they_were_written() {
    use crate::acl::{Access, Policy, Rule, SecretHash};
    let mut state = KvState::new(4, HistoryLimits::default());
    let bugs = InjectedBugs::default();
    let mut index = 0;
    let mut apply = |state: &mut KvState, request: Request| {
        index += 1;
        state.apply(index, &request, bugs)
    };
    let policy = |prefix: &str| {
        let rules = vec![Rule { prefix: prefix.into(), access: Access::Read }];
        Policy { name: "p".into(), rules, cluster: Access::Deny }
    };
    apply(&mut state, acl(AclCommand::Bootstrap { accessor: "root".into(), secret: SecretHash::of("root") }));
    apply(&mut state, as_token("root", acl(AclCommand::PutPolicy { policy: policy(""), create: true })));
    let token = AclCommand::CreateToken {
        accessor: "t".into(),
        secret: SecretHash::of("t"),
        policies: vec!["p".into()],
        description: String::new(),
    };
    apply(&mut state, as_token("root", acl(token)));
    let seen_by = |secret: &str, state: &KvState, past_ignored: bool| -> Vec<u64> {
        let credential = Credential::from_secret(secret);
        let authority = state.authority(&credential).unwrap();
        let reader = Reader { credential: &credential, authority: &authority, past_ignored };
        let events = state.events_since(1, &Filter::default(), 10, &reader).unwrap();
        events.iter().map(|event| event.revision).collect()
    };
    let seen = |state: &KvState, past_ignored: bool| seen_by("t", state, past_ignored);
    let write = |value: &str| as_token("root", put("a", value, Precondition::Always));
    let narrow = || as_token("root", acl(AclCommand::PutPolicy { policy: policy("b"), create: false }));
    let wide = || as_token("root", acl(AclCommand::PutPolicy { policy: policy(""), create: false }));

    apply(&mut state, write("1"));
    apply(&mut state, narrow());
    apply(&mut state, write("2"));
    assert_eq!(seen(&state, false), Vec::<u64>::new(), "narrowed: nothing under a/ is shown now");
    apply(&mut state, wide());
    apply(&mut state, write("3"));
    assert_eq!(seen(&state, false), [1, 3], "revision 2 was written while the policy was narrow");
    assert_eq!(seen(&state, true), [1, 2, 3], "the injected bug judges by the current state only");
    assert_eq!(
        state.changed_after(
            1,
            &Filter::default(),
            &Reader {
                credential: &Credential::from_secret("t"),
                authority: &state.authority(&Credential::from_secret("t")).unwrap(),
                past_ignored: false,
            }
        ),
        Some(true),
        "long polls judge the same way"
    );
    apply(
        &mut state,
        as_token(
            "root",
            acl(AclCommand::CreateToken {
                accessor: "u".into(),
                secret: SecretHash::of("u"),
                policies: vec!["p".into()],
                description: String::new(),
            }),
        ),
    );
    apply(&mut state, write("4"));
    assert_eq!(seen_by("u", &state, false), [4], "a new token sees nothing written before it existed");
}
