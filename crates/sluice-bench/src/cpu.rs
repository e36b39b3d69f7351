//! What the processes used, from `/proc` (Linux). Where a phase's CPU time
//! went: each process's user and system time before and after, for the
//! stack's own roles by pid and for the services (Redis, RabbitMQ,
//! PostgreSQL) by process name. And a process's memory. Where `/proc` is
//! missing, there is no split and no memory figure.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// The services, by the name their processes run under.
const SERVICES: [(&str, &str); 3] = [
    ("redis-server", "redis"),
    ("beam.smp", "rabbitmq"),
    ("postgres", "postgres"),
];

/// CPU ticks per group of processes at one instant.
pub struct Sample {
    at: Instant,
    ticks: BTreeMap<String, u64>,
}

/// A phase's CPU time per group: cores busy on average, and microseconds
/// per job.
#[derive(Debug, Serialize)]
pub struct Split {
    pub groups: Vec<GroupCpu>,
}

#[derive(Debug, Serialize)]
pub struct GroupCpu {
    pub group: String,
    pub cores: f64,
    pub us_per_job: f64,
}

/// User plus system ticks of process `pid`, if it runs.
fn ticks_of(pid: u32) -> Option<(String, u64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A process's name and user plus system ticks, from its `/proc/PID/stat`.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    // The name is in parentheses and may hold spaces: fields follow the last ')'.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let mut fields = rest.split_whitespace();
    // After the name: state (3rd field) ... utime (14th), stime (15th).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}

/// Samples `roles` (group, pid) and every service process.
pub fn sample(roles: &[(&str, u32)]) -> Option<Sample> {
    let mut ticks: BTreeMap<String, u64> = BTreeMap::new();
    for &(group, pid) in roles {
        let (_, t) = ticks_of(pid)?;
        *ticks.entry(group.to_owned()).or_default() += t;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Some((name, t)) = ticks_of(pid) else {
            continue;
        };
        if let Some((_, group)) = SERVICES.iter().find(|(n, _)| *n == name) {
            *ticks.entry((*group).to_owned()).or_default() += t;
        }
    }
    Some(Sample {
        at: Instant::now(),
        ticks,
    })
}

/// What each group used between `before` and `after`, for `jobs` jobs.
/// A process that ended in between (a PostgreSQL backend) is not counted.
pub fn split(before: &Sample, after: &Sample, jobs: usize) -> Split {
    let wall = (after.at - before.at).as_secs_f64().max(1e-9);
    let groups = after
        .ticks
        .iter()
        .map(|(group, &t)| {
            let used = t.saturating_sub(before.ticks.get(group).copied().unwrap_or(0));
            let seconds = used as f64 / TICKS_PER_S;
            GroupCpu {
                group: group.clone(),
                cores: seconds / wall,
                us_per_job: seconds * 1e6 / jobs.max(1) as f64,
            }
        })
        .collect();
    Split { groups }
}

impl Split {
    /// "api 0.41 cores (47 µs/job), …", the busiest first.
    pub fn line(&self) -> String {
        let mut groups: Vec<&GroupCpu> = self.groups.iter().collect();
        groups.sort_by(|a, b| b.cores.total_cmp(&a.cores));
        groups
            .iter()
            .map(|g| format!("{} {:.2} ({:.0} µs/job)", g.group, g.cores, g.us_per_job))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Resident and peak resident memory of a process, in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_stat_line_gives_the_name_and_user_plus_system_ticks() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime ...
        let stat = "42 (beam.smp) S 1 42 42 0 -1 4194560 9 0 0 0 1500 250 3 4 20 0 30";
        assert_eq!(parse_stat(stat), Some(("beam.smp".into(), 1750)));
        let spaced = "7 (tokio rt (x)) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0";
        assert_eq!(parse_stat(spaced), Some(("tokio rt (x)".into(), 15)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_split_is_each_groups_ticks_over_the_wall_time_and_the_jobs() {
        let at = Instant::now();
        let before = Sample {
            at,
            ticks: BTreeMap::from([("api".into(), 100), ("redis".into(), 50)]),
        };
        let after = Sample {
            at: at + Duration::from_secs(2),
            ticks: BTreeMap::from([("api".into(), 180), ("redis".into(), 90)]),
        };
        let split = split(&before, &after, 4000);
        let api = &split.groups[0];
        assert_eq!(api.group, "api");
        // 80 ticks = 0.8 s over 2 s: 0.4 cores; 0.8 s / 4000 jobs = 200 µs.
        assert!((api.cores - 0.4).abs() < 1e-9, "{split:?}");
        assert!((api.us_per_job - 200.0).abs() < 1e-6, "{split:?}");
        assert_eq!(
            split.line(),
            "api 0.40 (200 µs/job), redis 0.20 (100 µs/job)"
        );
    }

    #[test]
    fn this_process_can_be_sampled_where_proc_exists() {
        if std::path::Path::new("/proc/self/stat").exists() {
            let sampled = sample(&[("bench", std::process::id())]).expect("a sample");
            assert!(sampled.ticks.contains_key("bench"));
        }
    }
}
