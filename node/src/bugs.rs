//! Deliberate bugs that prove the checkers bite.
//!
//! Test harnesses switch these on to show that the chaos checkers catch what they claim to catch.
//! They exist only in the simulator and in debug builds; in a release build [`InjectedBugs`] has
//! no fields and every query is the constant `false`, so no flag can reach them.

/// Which deliberate bugs this node runs with. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectedBugs {
    /// Serve `linearizable` reads from the local state machine without ReadIndex.
    #[cfg(any(madsim, debug_assertions))]
    pub local_linearizable_reads: bool,
    /// Acknowledge appended log entries at once and write and fsync them a while later, like
    /// Redis's `appendfsync everysec`: a power cut loses the last moments of acknowledged writes.
    #[cfg(any(madsim, debug_assertions))]
    pub ack_before_fsync: bool,
    /// Apply retried client requests again instead of answering from the session table.
    #[cfg(any(madsim, debug_assertions))]
    pub skip_dedup: bool,
    /// Leave out some events from watch streams.
    #[cfg(any(madsim, debug_assertions))]
    pub drop_watch_events: bool,
    /// Count any accepted AppendEntries as leader contact when it arrives, as the staleness
    /// figures did first: from a deposed leader, or before the commits it carries are applied.
    #[cfg(any(madsim, debug_assertions))]
    pub unproven_leader_contact: bool,
    /// Judge a retry by its client tag alone, as sessions did before they kept fingerprints: a
    /// tag reused for another write is answered with the first write's outcome.
    #[cfg(any(madsim, debug_assertions))]
    pub ignore_tag_reuse: bool,
    /// Keep the authorities the store resolved for tokens when the ACL state changes: a
    /// deleted token or a narrowed policy still reads what it could read before.
    #[cfg(any(madsim, debug_assertions))]
    pub stale_acl_cache: bool,
    /// Show a watch or long poll the events its token may read now, without asking whether it
    /// could read them under the ACL state they were written under: a widened policy reveals
    /// what was written while it was narrow.
    #[cfg(any(madsim, debug_assertions))]
    pub current_acl_events: bool,
    /// Ignore `--client-cert-auth` on the HTTP port: clients without a certificate are served.
    #[cfg(any(madsim, debug_assertions))]
    pub optional_client_certificates: bool,
    /// Back up raft's newest snapshot file instead of the state applied now: a consistent
    /// backup, but one that misses the writes acknowledged since that snapshot was taken.
    #[cfg(any(madsim, debug_assertions))]
    pub backup_from_raft_snapshot: bool,
    /// Leave some committed proposals out of `cairn_server_proposals_committed_total`.
    #[cfg(any(madsim, debug_assertions))]
    pub uncounted_proposals: bool,
}

impl InjectedBugs {
    /// Parses a comma-separated list: `local-reads`, `early-ack`, `skip-dedup`, `drop-watch-events`,
    /// `any-contact`, `ignore-tag-reuse`, `stale-acl-cache`, `current-acl-events`, `optional-client-certificates`,
    /// `backup-from-raft-snapshot`, `uncounted-proposals`.
    #[cfg(any(madsim, debug_assertions))]
    pub fn parse(list: &str) -> Result<InjectedBugs, String> {
        let mut bugs = InjectedBugs::default();
        for name in list.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            match name {
                "local-reads" => bugs.local_linearizable_reads = true,
                "early-ack" => bugs.ack_before_fsync = true,
                "skip-dedup" => bugs.skip_dedup = true,
                "drop-watch-events" => bugs.drop_watch_events = true,
                "any-contact" => bugs.unproven_leader_contact = true,
                "ignore-tag-reuse" => bugs.ignore_tag_reuse = true,
                "stale-acl-cache" => bugs.stale_acl_cache = true,
                "current-acl-events" => bugs.current_acl_events = true,
                "optional-client-certificates" => bugs.optional_client_certificates = true,
                "backup-from-raft-snapshot" => bugs.backup_from_raft_snapshot = true,
                "uncounted-proposals" => bugs.uncounted_proposals = true,
                other => return Err(format!("unknown bug {other:?}")),
            }
        }
        Ok(bugs)
    }

    pub fn local_linearizable_reads(&self) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.local_linearizable_reads;
        #[cfg(not(any(madsim, debug_assertions)))]
        return false;
    }

    pub fn ack_before_fsync(&self) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.ack_before_fsync;
        #[cfg(not(any(madsim, debug_assertions)))]
        return false;
    }

    pub fn skip_dedup(&self) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.skip_dedup;
        #[cfg(not(any(madsim, debug_assertions)))]
        return false;
    }

    pub fn optional_client_certificates(&self) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.optional_client_certificates;
        #[cfg(not(any(madsim, debug_assertions)))]
        return false;
    }

    pub fn backup_from_raft_snapshot(&self) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.backup_from_raft_snapshot;
        #[cfg(not(any(madsim, debug_assertions)))]
        return false;
    }

    pub fn current_acl_events(&self) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.current_acl_events;
        #[cfg(not(any(madsim, debug_assertions)))]
        return false;
    }

    pub fn stale_acl_cache(&self) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.stale_acl_cache;
        #[cfg(not(any(madsim, debug_assertions)))]
        return false;
    }

    pub fn ignore_tag_reuse(&self) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.ignore_tag_reuse;
        #[cfg(not(any(madsim, debug_assertions)))]
        return false;
    }

    pub fn unproven_leader_contact(&self) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.unproven_leader_contact;
        #[cfg(not(any(madsim, debug_assertions)))]
        return false;
    }

    /// With the bug on, whether the committed proposal at log `index` goes uncounted (one in 4).
    pub fn leaves_proposal_uncounted(&self, index: u64) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.uncounted_proposals && index.is_multiple_of(4);
        #[cfg(not(any(madsim, debug_assertions)))]
        return {
            let _ = index;
            false
        };
    }

    /// With the bug on, whether a watch stream leaves out the event of `revision` (one in 29).
    pub fn drops_watch_event(&self, revision: u64) -> bool {
        #[cfg(any(madsim, debug_assertions))]
        return self.drop_watch_events && revision.is_multiple_of(29);
        #[cfg(not(any(madsim, debug_assertions)))]
        return {
            let _ = revision;
            false
        };
    }
}
