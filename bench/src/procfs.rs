//! Process-tree accounting from /proc: CPU seconds and resident memory of an MTA and everything it forked
//! (Postfix is a master with many short-lived children; penguin-mta is one process). CPU time counts what
//! the kernel charged to the processes, so it does not depend on what else the machine is doing.
//!
//! This kernel has no `/proc/PID/task/TID/children`, so a tree is found by scanning every `/proc/PID/stat`.

use std::collections::HashMap;

use anyhow::Context;

/// The fields of `/proc/PID/stat` this module uses (times in clock ticks).
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    /// Process state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// User time of the process (all its threads).
    pub utime: u64,
    /// System time of the process (all its threads).
    pub stime: u64,
    /// User time of its waited-for (reaped) children, recursively.
    pub cutime: u64,
    /// System time of its waited-for (reaped) children, recursively.
    pub cstime: u64,
    /// Start time after boot: with the pid, identifies a process across pid reuse.
    pub starttime: u64,
}

/// Reads and parses `/proc/PID/stat`; an error if the process is gone.
pub fn stat(pid: i32) -> anyhow::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat(&text).with_context(|| format!("parsing /proc/{pid}/stat"))
}

/// Parses the text of a `/proc/PID/stat` file. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Index 0 here is field 3 (state) of proc(5).
    let number = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        utime: number(11)?,
        stime: number(12)?,
        cutime: number(13)?,
        cstime: number(14)?,
        starttime: number(19)?,
    })
}

/// Every process in `/proc` with its stat (processes that vanish while scanning are skipped).
fn all_processes() -> Vec<(i32, Stat)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid).ok()?)))
        .collect()
}

/// `pid` (first) and all its live descendants, found by one scan of /proc. Children that are forked or
/// exit during the scan may be missed; that is the nature of /proc.
pub fn descendants(pid: i32) -> Vec<i32> {
    descendants_with_stat(pid)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// `pid` and its descendants with their stat; `pid` is included even if /proc no longer shows it.
fn descendants_with_stat(pid: i32) -> Vec<(i32, Option<Stat>)> {
    let processes = all_processes();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let mut stats: HashMap<i32, Stat> = HashMap::new();
    for (child, stat) in processes {
        children.entry(stat.ppid).or_default().push(child);
        stats.insert(child, stat);
    }
    let mut tree = vec![pid];
    let mut next = 0;
    while next < tree.len() {
        if let Some(kids) = children.get(&tree[next]) {
            tree.extend(kids.iter().copied().filter(|kid| *kid != pid));
        }
        next += 1;
    }
    tree.into_iter()
        .map(|pid| (pid, stats.get(&pid).copied()))
        .collect()
}

/// Clock ticks per second (`USER_HZ`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU seconds (user + system) used so far by `pid` and its descendants: for every live process of the
/// tree its own utime + stime plus cutime + cstime (children it already reaped count into it). Errors if
/// `pid` itself is gone. Resolution is one clock tick (10 ms) per process.
///
/// A child that exits between the scan and the read of its parent is missed or counted twice (its time
/// moves into the parent's cutime); take the difference of two readings over a run that lasts seconds.
pub fn tree_cpu_seconds(pid: i32) -> anyhow::Result<f64> {
    let tree = descendants_with_stat(pid);
    let mut ticks = 0u64;
    for (member, stat) in tree {
        let stat = match stat {
            Some(stat) => stat,
            // The root must exist: a vanished MTA is an error, not zero CPU.
            None if member == pid => self::stat(pid)?,
            None => continue,
        };
        ticks += stat.utime + stat.stime + stat.cutime + stat.cstime;
    }
    Ok(ticks as f64 / ticks_per_second())
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...) in bytes.
fn status_bytes(pid: i32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .with_context(|| format!("{field} not in /proc/{pid}/status"))
}

/// Current resident set size (VmRSS) of one process, in bytes.
pub fn rss_bytes(pid: i32) -> anyhow::Result<u64> {
    status_bytes(pid, "VmRSS")
}

/// Peak resident set size (VmHWM, kept by the kernel) of one process, in bytes. Only for a single
/// process: the kernel keeps no peak for a tree.
pub fn peak_rss(pid: i32) -> anyhow::Result<u64> {
    status_bytes(pid, "VmHWM")
}

/// Summed proportional set size (Pss from `/proc/PID/smaps_rollup`) of `pid` and its descendants, in
/// bytes: a page shared by k processes counts 1/k in each, so unlike summed RSS this is what the
/// tree really occupies. Costlier to read (the kernel walks the page tables): a snapshot, not sampled.
pub fn tree_pss_bytes(pid: i32) -> u64 {
    descendants(pid)
        .into_iter()
        .filter_map(|member| {
            let rollup = std::fs::read_to_string(format!("/proc/{member}/smaps_rollup")).ok()?;
            let kib = rollup
                .lines()
                .find_map(|line| line.strip_prefix("Pss:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()?;
            Some(kib * 1024)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_a_parenthesised_name() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 10 0 0 0 7 3 5 2 20 0 1 0 12345 0 0";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!((stat.utime, stat.stime, stat.cutime, stat.cstime), (7, 3, 5, 2));
        assert_eq!(stat.starttime, 12345);
    }

    #[test]
    fn a_tree_holds_its_root_and_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let me = std::process::id() as i32;
        let tree = descendants(me);
        assert_eq!(tree[0], me);
        assert!(tree.contains(&(child.id() as i32)));
        assert!(tree_cpu_seconds(me).expect("cpu") >= 0.0);
        assert!(rss_bytes(me).expect("rss") > 0);
        assert!(tree_pss_bytes(me) > 0);
        assert!(peak_rss(me).expect("hwm") > 0);
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
}
