//! Where the nodes live on the network, and how links between them are cut.
//!
//! With partitions asked for, each node runs in its own Linux network namespace
//! (`cairn-j<pid>-<slot>`, `<pid>` being this process's, so concurrent runs never share a
//! name), joined by a veth pair to a bridge in a hub namespace (`cairn-j<pid>-hub`). One more veth
//! (`cairn-j<pid>` here, `up0` in the hub) gives this process, in the root namespace, the address
//! 10.77.R.254 on the run's own subnet 10.77.R.0/24; node `n` is 10.77.R.n. Traffic stays on those
//! addresses. A link is cut by an iptables DROP rule in the receiving node's namespace, so only
//! traffic between nodes is cut: clients reach every node throughout, as in the simulator.
//!
//! Everything a run creates lives in its namespaces (the rules included) or dies with them, so
//! deleting the namespaces undoes it all. Without the rights to create namespaces, or without a
//! working iptables, the nodes run on loopback and partitions are skipped, which the run says.

use std::net::TcpListener;
use std::process::Command;

use super::command;

/// HTTP and peer ports inside a node's namespace, where the node has the address to itself.
const HTTP_PORT: u16 = 7700;
const PEER_PORT: u16 = 7701;

/// The nodes' network.
pub(super) enum Network {
    /// Every node on 127.0.0.1, each slot with its own ports (HTTP, peer).
    Loopback(Vec<(String, String)>),
    /// Every node in its own namespace.
    Namespaces(Namespaces),
}

impl Network {
    /// Namespaces when `partitions` are wanted and can be had; otherwise loopback, with the
    /// reason partitions are skipped when they were wanted.
    pub(super) fn choose(nodes: usize, partitions: bool) -> Result<(Network, Option<String>), String> {
        if !partitions {
            return Ok((Network::loopback(nodes)?, None));
        }
        match Namespaces::set_up(nodes) {
            Ok(namespaces) => Ok((Network::Namespaces(namespaces), None)),
            Err(reason) => Ok((Network::loopback(nodes)?, Some(reason))),
        }
    }

    fn loopback(nodes: usize) -> Result<Network, String> {
        let mut addresses = Vec::new();
        for _ in 0..nodes {
            addresses.push((free_loopback_address()?, free_loopback_address()?));
        }
        Ok(Network::Loopback(addresses))
    }

    pub(super) fn can_partition(&self) -> bool {
        matches!(self, Network::Namespaces(_))
    }

    /// The HTTP address of `slot`, for clients and for the other nodes.
    pub(super) fn http(&self, slot: usize) -> String {
        match self {
            Network::Loopback(addresses) => addresses[slot].0.clone(),
            Network::Namespaces(namespaces) => format!("{}:{HTTP_PORT}", namespaces.address(slot)),
        }
    }

    /// The raft (peer) address of `slot`.
    pub(super) fn peer(&self, slot: usize) -> String {
        match self {
            Network::Loopback(addresses) => addresses[slot].1.clone(),
            Network::Namespaces(namespaces) => format!("{}:{PEER_PORT}", namespaces.address(slot)),
        }
    }

    /// A command that runs `program` where the node of `slot` lives.
    pub(super) fn command(&self, slot: usize, program: &std::path::Path) -> Command {
        match self {
            Network::Loopback(_) => Command::new(program),
            Network::Namespaces(namespaces) => {
                // `ip netns exec` execs the program, so the child's pid is the node's own: signals
                // reach the node, not a wrapper.
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &namespaces.node(slot)]).arg(program);
                command
            }
        }
    }

    /// One line saying where the nodes are.
    pub(super) fn describe(&self) -> String {
        match self {
            Network::Loopback(_) => "loopback (127.0.0.1)".to_string(),
            Network::Namespaces(namespaces) => format!(
                "network namespaces cairn-j{run}-1..{nodes} on 10.77.{subnet}.0/24, links cut with {iptables}",
                run = namespaces.run,
                nodes = namespaces.nodes,
                subnet = namespaces.subnet,
                iptables = namespaces.iptables,
            ),
        }
    }

    /// Cuts traffic from `from` to `to`.
    pub(super) fn cut_one_way(&self, from: usize, to: usize) -> Result<(), String> {
        let namespaces = self.namespaces()?;
        let source = namespaces.address(from);
        namespaces.iptables(to, &["-A", "INPUT", "-s", &source, "-j", "DROP"])
    }

    /// Restores every link between nodes.
    pub(super) fn heal(&self) -> Result<(), String> {
        let namespaces = self.namespaces()?;
        (0..namespaces.nodes).try_for_each(|slot| namespaces.iptables(slot, &["-F", "INPUT"]))
    }

    fn namespaces(&self) -> Result<&Namespaces, String> {
        match self {
            // The nemesis is never given a partition without namespaces; this says so if it were.
            Network::Loopback(_) => Err("links cannot be cut on loopback".to_string()),
            Network::Namespaces(namespaces) => Ok(namespaces),
        }
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_loopback_address() -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|error| format!("no free loopback port: {error}"))?;
    listener.local_addr().map(|address| address.to_string()).map_err(|error| error.to_string())
}

/// The namespaces, links and addresses of one run; dropping it deletes them.
pub(super) struct Namespaces {
    /// This process's id: part of every name, so concurrent runs never collide.
    run: u32,
    /// R in 10.77.R.0/24.
    subnet: u8,
    nodes: usize,
    /// `iptables` or `iptables-legacy`, whichever works inside a namespace here.
    iptables: &'static str,
    /// Namespaces created so far, in creation order; deleted in reverse.
    created: Vec<String>,
    /// The root namespace's end of the hub link, once created.
    root_link: Option<String>,
}

impl Namespaces {
    /// Creates the hub, one namespace per node and the link from here. On any failure what was
    /// created is deleted again and the error says which step failed.
    fn set_up(nodes: usize) -> Result<Namespaces, String> {
        let run = std::process::id();
        let subnet = free_subnet(run)?;
        let mut namespaces =
            Namespaces { run, subnet, nodes, iptables: "iptables", created: Vec::new(), root_link: None };
        let hub = namespaces.hub();
        namespaces.add_namespace(&hub)?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        namespaces.iptables = working_iptables(&hub)?;
        for slot in 0..nodes {
            namespaces.add_node(slot)?;
        }
        namespaces.add_root_link()?;
        Ok(namespaces)
    }

    fn hub(&self) -> String {
        format!("cairn-j{}-hub", self.run)
    }

    fn node(&self, slot: usize) -> String {
        format!("cairn-j{}-{}", self.run, slot + 1)
    }

    fn address(&self, slot: usize) -> String {
        format!("10.77.{}.{}", self.subnet, slot + 1)
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.created.push(name.to_string());
        Ok(())
    }

    /// The node's namespace, with `eth0` (10.77.R.n) paired to `n<n>` on the hub's bridge.
    fn add_node(&mut self, slot: usize) -> Result<(), String> {
        let (name, hub) = (self.node(slot), self.hub());
        let port = format!("n{}", slot + 1);
        self.add_namespace(&name)?;
        ip(&["link", "add", "eth0", "netns", &name, "type", "veth", "peer", "name", &port, "netns", &hub])?;
        ip(&["-n", &name, "addr", "add", &format!("{}/24", self.address(slot)), "dev", "eth0"])?;
        ip(&["-n", &name, "link", "set", "eth0", "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &hub, "link", "set", &port, "up"]).map(drop)
    }

    /// This process's way in: `cairn-j<pid>` (10.77.R.254) paired to `up0` on the hub's bridge.
    fn add_root_link(&mut self) -> Result<(), String> {
        let (link, hub) = (format!("cairn-j{}", self.run), self.hub());
        ip(&["link", "add", &link, "type", "veth", "peer", "name", "up0", "netns", &hub])?;
        self.root_link = Some(link.clone());
        ip(&["addr", "add", &format!("10.77.{}.254/24", self.subnet), "dev", &link])?;
        ip(&["link", "set", &link, "up"])?;
        ip(&["-n", &hub, "link", "set", "up0", "master", "br0"])?;
        ip(&["-n", &hub, "link", "set", "up0", "up"]).map(drop)
    }

    fn iptables(&self, slot: usize, rule: &[&str]) -> Result<(), String> {
        let node = self.node(slot);
        let mut args = vec!["netns", "exec", &node, self.iptables, "-w"];
        args.extend_from_slice(rule);
        ip(&args).map(drop)
    }

    /// Deletes everything, reporting (not stopping at) what could not be deleted.
    fn tear_down(&mut self) {
        if let Some(link) = self.root_link.take()
            && let Err(error) = ip(&["link", "del", &link])
        {
            eprintln!("cairn jepsen: cleanup: {error}");
        }
        for name in self.created.drain(..).rev() {
            // A process left inside would keep the namespace alive after its name is gone. The
            // cluster stops its nodes first, so this finds none unless something went wrong.
            for pid in ip(&["netns", "pids", &name]).unwrap_or_default().split_whitespace() {
                if let Err(error) = command::run("kill", &["-s", "KILL", pid]) {
                    eprintln!("cairn jepsen: cleanup: {error}");
                }
            }
            if let Err(error) = ip(&["netns", "del", &name]) {
                eprintln!("cairn jepsen: cleanup: {error}");
            }
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.tear_down();
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    command::run("ip", args)
}

/// A 10.77.R.0/24 that no address or route here mentions, starting from one derived from `run`
/// so that concurrent runs start apart.
fn free_subnet(run: u32) -> Result<u8, String> {
    let used = ip(&["-4", "-o", "addr", "show"])? + &ip(&["-4", "route", "show"])?;
    (0..250u32)
        .map(|offset| ((run + offset) % 250 + 1) as u8)
        .find(|subnet| !used.contains(&format!("10.77.{subnet}.")))
        .ok_or_else(|| "every subnet 10.77.1-250.0/24 is in use here".to_string())
}

/// The iptables that can list rules inside `namespace`: the nftables one or the legacy one.
fn working_iptables(namespace: &str) -> Result<&'static str, String> {
    let mut errors = Vec::new();
    for candidate in ["iptables", "iptables-legacy"] {
        match ip(&["netns", "exec", namespace, candidate, "-w", "-S", "INPUT"]) {
            Ok(_) => return Ok(candidate),
            Err(error) => errors.push(error),
        }
    }
    Err(format!("no iptables works in a network namespace (install iptables): {}", errors.join("; ")))
}
