//! The gossip actor's task: it owns foca, drains every effect of each input before taking the
//! next (packets out, timers, notifications, in that order), and keeps foca's timers in a heap
//! ordered by `(deadline, sequence)` so timers due at the same instant fire in the order they
//! were scheduled, the same way on every run of a seed.
//!
//! madsim's UDP receive is not cancel-safe (a `recv_from` dropped by a losing `select!` branch
//! loses its datagram), so one reader task per socket owns the receive side and feeds a channel.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::sync::Arc;

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PeriodicParams, State, Timer, TimerToken};
use rand::rngs::SmallRng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::codec::{BincodeCodec, DATAGRAM_BYTES_MAX, ENVELOPE_BYTES, Envelope, Rejected, is_turn_undead};
use super::facts::{ChangeNotice, Fact, NodeMeta, SharedFacts};
use super::{
    GossipConfig, GossipCounters, GossipHandle, GossipIdentity, GossipMember, GossipTimings, GossipView, INBOX_MAX,
    Input, LocalState, LocalStateFn, PeerState, derived_address,
};
use crate::api::Role;
use crate::rt::{self, Duration, Instant, watch};

/// Datagrams the reader may queue before it stops reading (the OS then drops them).
const DATAGRAMS_QUEUED_MAX: usize = 1024;
/// This node's metadata is re-announced at least this often even when nothing changed, so the
/// "since last leader contact" figure others see stays fresh.
const META_REFRESH: Duration = Duration::from_secs(1);
/// How many times each membership update and fact is piggybacked. foca derives 2 for a
/// three-node cluster, which under 10% packet loss let suspicions go unrefuted (27 false downs in
/// 8 seeds × 2 simulated minutes); updates are tens of bytes, so sending each more often is cheap.
const TRANSMISSIONS_MAX: u8 = 8;
/// How often seeds that are not members yet are announced to.
const SEED_ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// The pause before a failed actor is replaced, so that a failure on every start cannot spin.
const RESTART_BACKOFF: Duration = Duration::from_millis(200);

type Swim = Foca<GossipIdentity, BincodeCodec, SmallRng, SharedFacts>;

/// Something due at a deadline: one of foca's timers, or the actor's own tick.
enum Due {
    Foca(Timer<GossipIdentity>),
    Tick,
}

/// A heap entry. Ordered by `(deadline, sequence)` only; the sequence breaks ties by order of
/// scheduling, so the heap never compares timers themselves.
struct Scheduled {
    deadline: Instant,
    sequence: u64,
    due: Due,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.sequence) == (other.deadline, other.sequence)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.sequence).cmp(&(other.deadline, other.sequence))
    }
}

/// Binds nothing: takes the bound `socket`, starts the reader task and the supervised actor, and
/// returns the actor's handle. Both tasks stop when `shutdown` turns true (the actor first leaves
/// the cluster).
pub fn spawn(
    config: GossipConfig,
    identity: GossipIdentity,
    socket: UdpSocket,
    local: LocalStateFn,
    shutdown: watch::Receiver<bool>,
) -> GossipHandle {
    let socket = Arc::new(socket);
    let (datagrams_tx, datagrams) = mpsc::channel(DATAGRAMS_QUEUED_MAX);
    let reader = rt::spawn(read_datagrams(socket.clone(), datagrams_tx));
    let (inbox_tx, inbox) = mpsc::channel(INBOX_MAX);
    let blueprint = Blueprint { config, identity, socket, local };
    rt::spawn(supervise(blueprint, Inputs { inbox, datagrams }, reader, shutdown));
    GossipHandle { inbox: inbox_tx }
}

/// What every actor is built from.
struct Blueprint {
    config: GossipConfig,
    identity: GossipIdentity,
    socket: Arc<UdpSocket>,
    local: LocalStateFn,
}

/// What the actor receives; it holds them locked while it runs, and they outlive it.
struct Inputs {
    inbox: mpsc::Receiver<Input>,
    datagrams: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
}

/// Why an actor stopped without failing.
enum Stopped {
    Shutdown,
    /// The reader task ended: no datagram would ever arrive again.
    ReaderGone,
}

/// Runs the actor on its own task and, until shutdown, replaces it whenever it fails or its
/// reader stops: no input may crash either, but if a bug does, the node must not drop out of
/// gossip for good (peers would show it down forever). A fresh actor starts under a renewed
/// identity, so peers take it as news at once; each replacement is logged and counted in
/// `GossipCounters::restarts`.
async fn supervise(
    mut blueprint: Blueprint,
    inputs: Inputs,
    mut reader: rt::JoinHandle<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let inputs = Arc::new(tokio::sync::Mutex::new(inputs));
    let mut restarts = 0;
    loop {
        let mut actor = Actor::new(&blueprint);
        actor.counters.restarts = restarts;
        match rt::spawn(actor.run(inputs.clone(), shutdown.clone())).await {
            Ok(Stopped::Shutdown) => break,
            Ok(Stopped::ReaderGone) => {
                tracing::error!(restarts, "the gossip reader stopped; starting a fresh one");
                let (datagrams_tx, datagrams) = mpsc::channel(DATAGRAMS_QUEUED_MAX);
                inputs.lock().await.datagrams = datagrams;
                reader = rt::spawn(read_datagrams(blueprint.socket.clone(), datagrams_tx));
            }
            Err(failure) => tracing::error!(%failure, restarts, "the gossip actor failed; starting a fresh one"),
        }
        restarts += 1;
        blueprint.identity = foca::Identity::renew(&blueprint.identity).unwrap_or(blueprint.identity);
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = rt::sleep(RESTART_BACKOFF) => {}
        }
    }
    reader.abort();
}

/// The reader task: the only place that receives on the socket.
async fn read_datagrams(socket: Arc<UdpSocket>, datagrams: mpsc::Sender<(Vec<u8>, SocketAddr)>) {
    let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX + 1];
    loop {
        match socket.recv_from(&mut buffer).await {
            Ok((length, from)) => {
                if datagrams.send((buffer[..length].to_vec(), from)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "gossip receive failed");
                rt::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

struct Actor {
    foca: Swim,
    /// Where foca leaves packets, timers and notifications; drained after every input.
    effects: AccumulatingRuntime<GossipIdentity>,
    facts: SharedFacts,
    timers: BinaryHeap<Reverse<Scheduled>>,
    /// The next timer's sequence number.
    timer_sequence: u64,
    /// The token of the newest timer foca scheduled: the one its timers must carry now.
    timer_token: Option<TimerToken>,
    socket: Arc<UdpSocket>,
    envelope: Envelope,
    timings: GossipTimings,
    seeds: Vec<SocketAddr>,
    local: LocalStateFn,
    counters: GossipCounters,
    /// When a datagram from each gossip address last arrived.
    last_seen: HashMap<SocketAddr, Instant>,
    /// The last metadata this node announced, and when.
    meta_sent: Option<(NodeMeta, Instant)>,
    /// The highest revision this node announced in a change notice as leader.
    notice_revision: u64,
    seeds_announced_at: Option<Instant>,
}

impl Actor {
    fn new(blueprint: &Blueprint) -> Actor {
        let Blueprint { config, identity, socket, local } = blueprint;
        let facts = SharedFacts::default();
        let foca = Foca::with_custom_broadcast(
            identity.clone(),
            foca_config(&config.timings),
            rt::seeded_rng(),
            BincodeCodec,
            facts.clone(),
        );
        Actor {
            foca,
            effects: AccumulatingRuntime::new(),
            facts,
            timers: BinaryHeap::new(),
            timer_sequence: 0,
            timer_token: None,
            socket: socket.clone(),
            envelope: super::codec::Envelope::new(&config.cluster_name, config.secret.as_deref()),
            timings: config.timings,
            seeds: config.seeds.clone(),
            local: local.clone(),
            counters: GossipCounters::default(),
            last_seen: HashMap::new(),
            meta_sent: None,
            notice_revision: 0,
            seeds_announced_at: None,
        }
    }

    async fn run(mut self, inputs: Arc<tokio::sync::Mutex<Inputs>>, mut shutdown: watch::Receiver<bool>) -> Stopped {
        let mut inputs = inputs.lock_owned().await;
        let Inputs { inbox, datagrams } = &mut *inputs;
        self.schedule(Duration::ZERO, Due::Tick);
        loop {
            let Some(Reverse(next)) = self.timers.peek() else { unreachable!("the tick is always scheduled") };
            let deadline = next.deadline;
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(input) = inbox.recv() => self.handle_input(input),
                received = datagrams.recv() => match received {
                    Some((datagram, from)) => self.handle_datagram(&datagram, from),
                    None => return Stopped::ReaderGone,
                },
                _ = rt::sleep_until(deadline) => self.fire_due_timers(),
            }
            self.flush().await;
        }
        if let Err(error) = self.foca.leave_cluster(&mut self.effects) {
            tracing::debug!(%error, "leaving the gossip cluster");
        }
        self.flush().await;
        Stopped::Shutdown
    }

    fn handle_input(&mut self, input: Input) {
        match input {
            Input::View(reply) => {
                let _receiver_gone = reply.send(self.view());
            }
        }
    }

    fn handle_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        self.counters.received += 1;
        let packet = match self.envelope.open(datagram) {
            Ok(packet) => packet,
            Err(rejected) => {
                let counter = match rejected {
                    Rejected::Malformed => &mut self.counters.malformed,
                    Rejected::ForeignCluster => &mut self.counters.foreign_cluster,
                    Rejected::BadTag => &mut self.counters.bad_tag,
                };
                *counter += 1;
                tracing::debug!(%from, ?rejected, "dropped a gossip datagram");
                return;
            }
        };
        self.last_seen.insert(from, Instant::now());
        if let Err(error) = self.foca.handle_data(packet, &mut self.effects) {
            self.counters.refused += 1;
            tracing::debug!(%from, %error, "foca refused a packet");
        }
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while self.timers.peek().is_some_and(|Reverse(next)| next.deadline <= now) {
            let Some(Reverse(scheduled)) = self.timers.pop() else { break };
            self.handle_due(scheduled.due);
        }
    }

    fn handle_due(&mut self, due: Due) {
        match due {
            Due::Foca(timer) => {
                let timer = self.restore_suspicion(timer);
                if let Err(error) = self.foca.handle_timer(timer, &mut self.effects) {
                    tracing::debug!(%error, "foca timer");
                }
            }
            Due::Tick => self.tick(),
        }
    }

    /// foca drops its pending timers whenever it bumps its timer token (this node declared down,
    /// then rejoining under a new identity) but keeps its suspects. With no timer left and the
    /// suspect never told, such a suspicion outlives the partition that raised it: in
    /// `membership_converges_after_a_partition_heals` (seed 1) a node showed a live peer
    /// suspect for good after the heal. A suspicion timer with an old token is handed over with
    /// the current one, so it resolves as foca meant it to: down, unless the member refuted in
    /// time (foca checks the incarnation). A down member that is alive rejoins at once.
    fn restore_suspicion(&mut self, timer: Timer<GossipIdentity>) -> Timer<GossipIdentity> {
        match (timer, self.timer_token) {
            (Timer::ChangeSuspectToDown { member_id, incarnation, token }, Some(current)) if token != current => {
                self.counters.suspicions_restored += 1;
                Timer::ChangeSuspectToDown { member_id, incarnation, token: current }
            }
            (timer, _) => timer,
        }
    }

    fn schedule(&mut self, after: Duration, due: Due) {
        let sequence = self.timer_sequence;
        self.timer_sequence += 1;
        self.timers.push(Reverse(Scheduled { deadline: Instant::now() + after, sequence, due }));
    }

    /// Sends what foca queued, schedules its timers and reports its notifications.
    async fn flush(&mut self) {
        for (to, sealed) in self.take_effects() {
            match rt::send_datagram(&self.socket, to, &sealed).await {
                Ok(_) => self.counters.sent += 1,
                Err(error) => tracing::debug!(%to, %error, "gossip send failed"),
            }
        }
    }

    /// Takes everything foca queued: schedules its timers, reports its notifications, and
    /// returns the sealed datagrams to send.
    fn take_effects(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut outgoing = Vec::new();
        while let Some((to, packet)) = self.effects.to_send() {
            if self.foca.iter_members().any(|member| *member.id() == to) && is_turn_undead::<GossipIdentity>(&packet) {
                // foca 2.0.0 sends its courtesy TurnUndead when a suspicion timer fires even if
                // the suspect refuted in time (`apply_existing_if` yields a summary on a failed
                // condition too), which made every refuted suspicion a forced rejoin. A member we
                // still count as active was not declared down: don't tell it so.
                self.counters.turn_undead_suppressed += 1;
                continue;
            }
            outgoing.push((to.gossip, self.envelope.seal(&packet)));
        }
        while let Some((after, timer)) = self.effects.to_schedule() {
            if let Some(token) = token_of(&timer) {
                self.timer_token = Some(token);
            }
            self.schedule(after, Due::Foca(timer));
        }
        while let Some(notification) = self.effects.to_notify() {
            match notification {
                OwnedNotification::MemberDown(_) => self.counters.members_down += 1,
                OwnedNotification::Rejoin(_) => self.counters.rejoins += 1,
                _ => {}
            }
            report(notification);
        }
        outgoing
    }

    /// Refreshes this node's metadata, announces new revisions as leader, contacts unseen seeds.
    fn tick(&mut self) {
        let local = (self.local)();
        let now = Instant::now();
        self.publish_meta(&local, now);
        self.publish_change(&local);
        if self.seeds_announced_at.is_none_or(|at| now.saturating_duration_since(at) >= SEED_ANNOUNCE_EVERY) {
            self.seeds_announced_at = Some(now);
            self.announce_to_seeds(&local);
        }
        self.schedule(self.timings.tick, Due::Tick);
    }

    fn publish_meta(&mut self, local: &LocalState, now: Instant) {
        let identity = self.foca.identity();
        let (id, generation) = (identity.id, identity.generation);
        let (sequence, fresh) = match &self.meta_sent {
            Some((sent, at)) => {
                let same = (sent.role, sent.term, sent.leader, sent.revision)
                    == (local.role, local.term, local.leader, local.revision);
                (sent.sequence + 1, same && now.saturating_duration_since(*at) < META_REFRESH)
            }
            None => (1, false),
        };
        if fresh {
            return;
        }
        let meta = NodeMeta {
            id,
            generation,
            sequence,
            role: local.role,
            term: local.term,
            leader: local.leader,
            revision: local.revision,
            leader_contact_ms: local.leader_contact.map(millis),
        };
        self.add_broadcast(&Fact::Meta(meta.clone()));
        self.meta_sent = Some((meta, now));
    }

    fn publish_change(&mut self, local: &LocalState) {
        if local.role != Role::Leader || local.revision <= self.notice_revision {
            return;
        }
        self.notice_revision = local.revision;
        let leader = self.foca.identity().id;
        self.add_broadcast(&Fact::Change(ChangeNotice { leader, term: local.term, revision: local.revision }));
    }

    fn add_broadcast(&mut self, fact: &Fact) {
        if let Err(error) = self.foca.add_broadcast(&fact.encode()) {
            tracing::warn!(%error, "cannot add a gossip broadcast");
        }
    }

    fn announce_to_seeds(&mut self, local: &LocalState) {
        let own = self.foca.identity().gossip;
        let mut targets: Vec<SocketAddr> = self.seeds.clone();
        targets.extend(local.raft_peers.iter().filter_map(|peer| derived_address(peer)));
        targets.sort_unstable();
        targets.dedup();
        let known: Vec<SocketAddr> = self.foca.iter_members().map(|member| member.id().gossip).collect();
        for address in targets.into_iter().filter(|a| *a != own && !known.contains(a)) {
            let placeholder = GossipIdentity {
                id: 0,
                peer: String::new(),
                http: String::new(),
                gossip: address,
                generation: 0,
                renewal: 0,
            };
            if let Err(error) = self.foca.announce(placeholder, &mut self.effects) {
                tracing::debug!(%address, %error, "announcing to a seed");
            }
        }
    }

    fn view(&self) -> GossipView {
        let now = Instant::now();
        let facts = self.facts.lock();
        let meta_of = |identity: &GossipIdentity| {
            facts.metas.get(&identity.id).filter(|meta| meta.generation == identity.generation).cloned()
        };
        let own = self.foca.identity();
        let mut members = vec![GossipMember {
            identity: own.clone(),
            state: PeerState::Alive,
            last_seen: Some(Duration::ZERO),
            meta: meta_of(own),
        }];
        members.extend(self.foca.iter_membership_state().map(|member| GossipMember {
            identity: member.id().clone(),
            state: match member.state() {
                State::Alive => PeerState::Alive,
                State::Suspect => PeerState::Suspect,
                State::Down => PeerState::Down,
            },
            last_seen: self.last_seen.get(&member.id().gossip).map(|at| now.saturating_duration_since(*at)),
            meta: meta_of(member.id()),
        }));
        members.sort_by_key(|member| (member.identity.id, member.identity.gossip));
        GossipView { members, counters: self.counters, change: facts.change, newest_revision: facts.newest_revision() }
    }
}

fn report(notification: OwnedNotification<GossipIdentity>) {
    match notification {
        OwnedNotification::MemberUp(member) => {
            tracing::info!(id = member.id, gossip = %member.gossip, "gossip: member up")
        }
        OwnedNotification::MemberDown(member) => {
            tracing::info!(id = member.id, gossip = %member.gossip, "gossip: member down")
        }
        OwnedNotification::Rename(old, new) => {
            tracing::info!(id = new.id, old = old.generation, new = new.generation, "gossip: member restarted")
        }
        OwnedNotification::Rejoin(identity) => tracing::info!(renewal = identity.renewal, "gossip: rejoined"),
        OwnedNotification::Defunct => tracing::warn!("gossip: this node was declared down"),
        other => tracing::debug!(?other, "gossip notification"),
    }
}

fn token_of(timer: &Timer<GossipIdentity>) -> Option<TimerToken> {
    match timer {
        Timer::ProbeRandomMember(token)
        | Timer::PeriodicAnnounce(token)
        | Timer::PeriodicAnnounceDown(token)
        | Timer::PeriodicGossip(token)
        | Timer::SendIndirectProbe { token, .. }
        | Timer::ChangeSuspectToDown { token, .. } => Some(*token),
        Timer::RemoveDown(_) => None,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn foca_config(timings: &GossipTimings) -> foca::Config {
    let mut config = foca::Config::new_lan(NonZeroU32::new(3).expect("three is not zero"));
    config.probe_period = timings.probe_period;
    config.probe_rtt = timings.probe_rtt;
    config.suspect_to_down_after = timings.suspect_to_down_after;
    config.max_transmissions = NonZeroU8::new(TRANSMISSIONS_MAX).expect("not zero");
    config.max_packet_size = NonZeroUsize::new(DATAGRAM_BYTES_MAX - ENVELOPE_BYTES).expect("the envelope is small");
    config.periodic_announce_to_down_members = Some(PeriodicParams {
        frequency: timings.announce_to_down,
        num_members: NonZeroUsize::new(2).expect("two is not zero"),
    });
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_by_deadline_then_by_scheduling_order() {
        let start = Instant::now();
        let at = |ms: u64, sequence: u64| {
            Reverse(Scheduled { deadline: start + Duration::from_millis(ms), sequence, due: Due::Tick })
        };
        let mut heap = BinaryHeap::from([at(5, 0), at(1, 3), at(1, 1), at(0, 2)]);
        let mut order = Vec::new();
        while let Some(Reverse(next)) = heap.pop() {
            order.push(next.sequence);
        }
        assert_eq!(order, [2, 1, 3, 0]);
    }

    /// An actor for node `id` on a loopback socket, never run: tests hand it datagrams directly.
    async fn idle_actor(id: u64) -> Actor {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let identity = GossipIdentity {
            id,
            peer: format!("127.0.0.1:{}", 7000 + id),
            http: format!("127.0.0.1:{}", 8000 + id),
            gossip: address,
            generation: 1,
            renewal: 0,
        };
        let local: LocalStateFn = Arc::new(quiet_follower);
        Actor::new(&Blueprint { config: GossipConfig::new(address), identity, socket: Arc::new(socket), local })
    }

    /// A sealed announce from `sender` to `target`, as it would arrive on the wire.
    fn announce(sender: &mut Actor, target: &Actor) -> Vec<u8> {
        sender.foca.announce(target.foca.identity().clone(), &mut sender.effects).unwrap();
        let (_, packet) = sender.effects.to_send().unwrap();
        packet.to_vec()
    }

    /// The probe's datagram: an announce whose sender's `peer` string declares 2^44 bytes
    /// aborted the process (`memory allocation of 17592186044416 bytes failed`).
    #[tokio::test]
    async fn a_datagram_declaring_a_huge_length_is_refused() {
        let (mut target, mut sender) = (idle_actor(1).await, idle_actor(2).await);
        let packet = announce(&mut sender, &target);
        // The header starts with the sender's id (one varint byte), then its peer address's length.
        let mut lying = vec![packet[0], 0xFD];
        lying.extend_from_slice(&(1u64 << 44).to_le_bytes());
        lying.extend_from_slice(&packet[2..]);
        let from = sender.foca.identity().gossip;
        target.handle_datagram(&sender.envelope.seal(&lying), from);
        assert_eq!(target.counters.refused, 1);
        target.handle_datagram(&sender.envelope.seal(&packet), from);
        assert_eq!(target.counters.refused, 1, "a valid announce is still accepted");
    }

    /// Goal: if the actor fails anyway, the node does not drop out of gossip for good. Method: a
    /// local-state function that panics once (the only way left to fail the actor); the view
    /// is answered afterwards by a fresh actor that counts the restart.
    // madsim ends the whole simulation when any task panics, so only tokio can show a restart.
    #[cfg(not(madsim))]
    #[tokio::test]
    async fn a_failed_actor_is_replaced_by_a_fresh_one() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let identity = idle_actor(1).await.foca.identity().clone();
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = calls.clone();
        let local: LocalStateFn = Arc::new(move || {
            assert!(counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0, "the first tick fails");
            quiet_follower()
        });
        let (stop, shutdown) = watch::channel(false);
        let handle = spawn(GossipConfig::new(address), identity, socket, local, shutdown);
        let deadline = Instant::now() + Duration::from_secs(10);
        let view = loop {
            let view = handle.view().await.expect("the supervisor keeps an actor running");
            if view.counters.restarts > 0 || Instant::now() > deadline {
                break view;
            }
            rt::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(view.counters.restarts, 1);
        assert_eq!(view.members[0].identity.renewal, 1, "the fresh actor renewed its identity");
        stop.send(true).unwrap();
    }

    /// Goal: a reader task that stopped is replaced too. Method: supervise with a reader that
    /// already ended (its channel closed); datagrams sent afterwards are received and counted.
    #[cfg(not(madsim))]
    #[tokio::test]
    async fn a_stopped_reader_is_replaced_by_a_fresh_one() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let identity = idle_actor(1).await.foca.identity().clone();
        let blueprint = Blueprint {
            config: GossipConfig::new(address),
            identity,
            socket: Arc::new(socket),
            local: Arc::new(quiet_follower),
        };
        let (inbox_tx, inbox) = mpsc::channel(INBOX_MAX);
        let (_, datagrams) = mpsc::channel(1);
        let (stop, shutdown) = watch::channel(false);
        rt::spawn(supervise(blueprint, Inputs { inbox, datagrams }, rt::spawn(async {}), shutdown));
        let handle = GossipHandle { inbox: inbox_tx };
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let view = loop {
            sender.send_to(b"not gossip", address).unwrap();
            let view = handle.view().await.expect("the supervisor keeps an actor running");
            if view.counters.malformed > 0 || Instant::now() > deadline {
                break view;
            }
            rt::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!((view.counters.restarts, view.counters.malformed > 0), (1, true));
        stop.send(true).unwrap();
    }

    fn quiet_follower() -> LocalState {
        LocalState {
            role: Role::Follower,
            term: 1,
            leader: None,
            revision: 0,
            leader_contact: None,
            raft_peers: Vec::new(),
        }
    }

    /// Hostile datagrams through the whole receive path: envelope, foca with our codec and
    /// broadcast handler, then everything foca queued in reaction (`PROPTEST_CASES` sets the
    /// case count). Under tokio only: proptest drives the cases from a blocking loop, which
    /// madsim's runtime does not offer.
    #[cfg(not(madsim))]
    mod properties {
        use std::sync::Mutex;

        use proptest::prelude::*;

        use super::*;
        use crate::hostile_bytes::hostile;

        /// Valid packets, unsealed: what two actors say to each other while they meet and
        /// exchange facts.
        fn conversation(target: &mut Actor, sender: &mut Actor) -> Vec<Vec<u8>> {
            for actor in [&mut *target, &mut *sender] {
                actor.tick();
                actor.add_broadcast(&Fact::Change(ChangeNotice { leader: 2, term: 3, revision: 9 }));
            }
            let mut to_target = vec![announce(sender, target)];
            let mut packets = to_target.clone();
            for _round in 0..6 {
                // Probes, gossip and announcements are timer-driven; fire a few as if due.
                for actor in [&mut *target, &mut *sender] {
                    for _timer in 0..3 {
                        if let Some(Reverse(next)) = actor.timers.pop() {
                            actor.handle_due(next.due);
                        }
                    }
                }
                let to_sender = deliver(&to_target, sender, target);
                to_target = deliver(&to_sender, target, sender);
                packets.extend(to_sender.into_iter().chain(to_target.iter().cloned()));
            }
            packets
        }

        /// Hands `packets` from `from` to `to`; returns what `to` answers `from`, unsealed.
        fn deliver(packets: &[Vec<u8>], from: &Actor, to: &mut Actor) -> Vec<Vec<u8>> {
            let address = from.foca.identity().gossip;
            for packet in packets {
                to.handle_datagram(&from.envelope.seal(packet), address);
            }
            let answers = to.take_effects().into_iter().filter(|(at, _)| *at == address);
            answers.map(|(_, sealed)| sealed[ENVELOPE_BYTES..].to_vec()).collect()
        }

        /// What one hostile step does.
        #[derive(Clone, Debug)]
        enum Step {
            /// Bytes straight off the wire.
            Raw(Vec<u8>),
            /// Bytes sealed in a valid envelope (no secret needed), so they reach foca.
            Sealed(Vec<u8>),
            /// The earliest timer fires, as if its deadline had come.
            Timer,
        }

        proptest! {
            #[test]
            fn hostile_datagrams_never_fail_the_actor(steps in proptest::collection::vec(
                prop_oneof![
                    1 => proptest::collection::vec(any::<u8>(), 0..DATAGRAM_BYTES_MAX + 1).prop_map(Step::Raw),
                    6 => hostile(valid_packets(), DATAGRAM_BYTES_MAX - ENVELOPE_BYTES).prop_map(Step::Sealed),
                    1 => Just(Step::Timer),
                ],
                1..16,
            )) {
                let (runtime, actor, peer) = shared();
                let _entered = runtime.enter();
                let mut actor = actor.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for step in steps {
                    let datagram = match step {
                        Step::Raw(bytes) => bytes,
                        Step::Sealed(packet) => actor.envelope.seal(&packet),
                        Step::Timer => {
                            if let Some(Reverse(next)) = actor.timers.pop() {
                                actor.handle_due(next.due);
                            }
                            actor.take_effects();
                            continue;
                        }
                    };
                    actor.handle_datagram(&datagram, *peer);
                    actor.take_effects();
                }
                let _view = actor.view();
            }
        }

        /// The valid packets the mutations start from, recorded once.
        fn valid_packets() -> Vec<Vec<u8>> {
            let (runtime, _, _) = shared();
            runtime.block_on(async {
                let (mut target, mut sender) = (idle_actor(1).await, idle_actor(2).await);
                conversation(&mut target, &mut sender)
            })
        }

        /// One runtime and one actor for every case, so hostile input meets the state earlier
        /// cases left behind.
        fn shared() -> &'static (tokio::runtime::Runtime, Mutex<Actor>, SocketAddr) {
            static SHARED: std::sync::OnceLock<(tokio::runtime::Runtime, Mutex<Actor>, SocketAddr)> =
                std::sync::OnceLock::new();
            SHARED.get_or_init(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let actor = runtime.block_on(idle_actor(3));
                let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
                (runtime, Mutex::new(actor), peer)
            })
        }
    }
}
