//! The process metrics Prometheus' own clients export, under their standard names, read from
//! `/proc/self` at each scrape. Not built under the simulator: its nodes share one process.
//! Off Linux the files are absent and the values stay 0.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Linux reports CPU time in clock ticks of `sysconf(_SC_CLK_TCK)`, which is 100 on every
/// architecture Linux supports in practice (reading it would need libc and unsafe code).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

#[derive(Default)]
pub(super) struct ProcessMetrics {
    resident_memory_bytes: Gauge,
    open_fds: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
}

impl ProcessMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            self.resident_memory_bytes.clone(),
        );
        registry.register("process_open_fds", "Open file descriptors", self.open_fds.clone());
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            self.cpu_seconds.clone(),
        );
    }

    pub(super) fn read(&self) {
        if let Some(bytes) = resident_bytes() {
            self.resident_memory_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(i64::try_from(entries.count()).unwrap_or(i64::MAX));
        }
        if let Some(seconds) = cpu_seconds() {
            self.cpu_seconds.inner().store(seconds.to_bits(), Ordering::Relaxed);
        }
    }
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// utime + stime of `/proc/self/stat`, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / CLOCK_TICKS_PER_SECOND)
}

/// The command name (field 2) is in parentheses and may hold spaces and parentheses, so fields
/// are counted from the last `)`: utime and stime are fields 14 and 15.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: CPU ticks are found past a command name with spaces and parentheses. Method: parse
    /// a stat line shaped like the kernel's.
    #[test]
    fn cpu_ticks_are_read_past_an_odd_command_name() {
        let stat = "4242 (cairn (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1000 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    /// Goal: this process's figures are read on Linux. Method: read them once.
    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_and_cpu() {
        assert!(resident_bytes().is_some_and(|bytes| bytes > 0));
        assert!(cpu_seconds().is_some());
    }
}
