//! Faults the harness injects. Every fault is deterministic under the simulation seed.

use cairn_node::command::NodeId;
use madsim::net::NetSim;

use crate::cluster::SimCluster;

impl SimCluster {
    /// Kills a node's process: its tasks and sockets vanish; its disk keeps everything written
    /// (a process crash loses nothing the kernel already has).
    pub fn kill(&self, id: NodeId) {
        self.runtime.kill(self.nodes[&id].handle.id());
    }

    /// Kills and restarts a node; it recovers from its disk. (madsim requires the kill first.)
    pub fn restart(&self, id: NodeId) {
        let handle = self.nodes[&id].handle.id();
        self.runtime.kill(handle);
        self.runtime.restart(handle);
    }

    /// Power loss: kills a node and drops or tears its unsynced disk writes, then restarts it.
    /// Returns how many unsynced bytes were lost.
    pub fn crash(&self, id: NodeId) -> u64 {
        let node = &self.nodes[&id];
        self.runtime.kill(node.handle.id());
        let report = node.disk.crash();
        self.runtime.restart(node.handle.id());
        report.bytes_lost
    }

    /// Freezes a node's tasks without killing them, like SIGSTOP.
    pub fn pause(&self, id: NodeId) {
        self.runtime.pause(self.nodes[&id].handle.id());
    }

    pub fn resume(&self, id: NodeId) {
        self.runtime.resume(self.nodes[&id].handle.id());
    }

    /// Cuts every link between nodes in different groups (both directions). Nodes in no group
    /// are cut off from all the others.
    pub fn partition(&self, groups: &[Vec<NodeId>]) {
        let net = NetSim::current();
        let group_of = |id: NodeId| groups.iter().position(|group| group.contains(&id));
        for &a in self.nodes.keys() {
            for &b in self.nodes.keys() {
                if a != b && (group_of(a).is_none() || group_of(a) != group_of(b)) {
                    net.clog_link(self.nodes[&a].handle.id(), self.nodes[&b].handle.id());
                }
            }
        }
    }

    /// Cuts a node off from every other node and every client.
    pub fn isolate(&self, id: NodeId) {
        NetSim::current().clog_node(self.nodes[&id].handle.id());
    }

    /// Cuts the link from `from` to `to` only (one-way).
    pub fn clog_one_way(&self, from: NodeId, to: NodeId) {
        NetSim::current().clog_link(self.nodes[&from].handle.id(), self.nodes[&to].handle.id());
    }

    /// Sets the probability that a packet (a UDP datagram, a TCP segment attempt) is lost.
    pub fn set_packet_loss(&self, rate: f64) {
        NetSim::current().update_config(|config| config.packet_loss_rate = rate);
    }

    /// Restores every link and clears packet loss.
    pub fn heal(&self) {
        let net = NetSim::current();
        for a in self.nodes.values() {
            net.unclog_node(a.handle.id());
            for b in self.nodes.values() {
                net.unclog_link(a.handle.id(), b.handle.id());
            }
        }
        net.update_config(|config| config.packet_loss_rate = 0.0);
    }
}
