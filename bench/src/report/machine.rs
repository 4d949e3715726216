//! `RunInfo::collect_with_spool`: the date and a one-line description of the machine, from /proc and /sys.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::RunInfo;

impl RunInfo {
    /// The run's date (now, UTC) and machine, with the disk that holds `spool_dir`.
    pub fn collect_with_spool(command: String, spool_dir: &Path) -> RunInfo {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        RunInfo {
            date: utc_minute(seconds),
            machine: describe_machine(spool_dir),
            command,
            extra: Vec::new(),
        }
    }
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the Unix epoch.
fn utc_minute(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let minute_of_day = seconds % 86_400 / 60;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// "Intel(R) Xeon(R) Processor, 2 CPUs (virtual), 23.5 GiB RAM, Linux 6.18.44, spool /var/tmp: ext4 on
/// /dev/vda (virtio_blk, 256 GiB)"; parts that cannot be read say so instead of failing the run.
fn describe_machine(spool_dir: &Path) -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = cpu_summary(&read("/proc/cpuinfo"));
    let memory = mem_total_gib(&read("/proc/meminfo"))
        .map_or_else(|| "RAM unknown".to_owned(), |gib| format!("{gib:.1} GiB RAM"));
    let kernel = match read("/proc/sys/kernel/osrelease").trim() {
        "" => "Linux (release unknown)".to_owned(),
        release => format!("Linux {release}"),
    };
    format!("{cpu}, {memory}, {kernel}, {}", describe_disk(spool_dir))
}

/// "MODEL, N CPUs" (logical CPUs), with "(virtual)" when the CPU flags name a hypervisor.
fn cpu_summary(cpuinfo: &str) -> String {
    let field = |line: &str, name: &str| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_owned())
    };
    let model = cpuinfo
        .lines()
        .find_map(|line| field(line, "model name"))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let count = cpuinfo
        .lines()
        .filter(|line| field(line, "processor").is_some())
        .count();
    let virtual_cpu = cpuinfo
        .lines()
        .filter_map(|line| field(line, "flags"))
        .any(|flags| flags.split_whitespace().any(|flag| flag == "hypervisor"));
    let count = match count {
        0 => std::thread::available_parallelism().map_or(0, |n| n.get()),
        count => count,
    };
    let plural = if count == 1 { "" } else { "s" };
    let virtual_note = if virtual_cpu { " (virtual)" } else { "" };
    format!("{model}, {count} CPU{plural}{virtual_note}")
}

/// MemTotal of /proc/meminfo in GiB.
fn mem_total_gib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1_048_576.0)
}

/// "spool DIR: FSTYPE on SOURCE (MODEL or DRIVER, SIZE)" for the file system holding `dir`.
fn describe_disk(dir: &Path) -> String {
    let shown = dir.display();
    let Ok(metadata) = std::fs::metadata(dir) else {
        return format!("spool {shown}: not found");
    };
    let dev = metadata.dev();
    // The glibc encoding of dev_t (gnu_dev_major/minor).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut text = match mount_of(&mountinfo, major, minor, &canonical) {
        Some(mount) => format!("spool {shown}: {} on {}", mount.fstype, mount.source),
        None => format!("spool {shown}: device {major}:{minor}"),
    };
    if let Some(block) = block_device(major, minor) {
        text.push_str(&format!(" ({block})"));
    }
    text
}

/// One line of /proc/self/mountinfo, the parts used here.
#[derive(Debug, PartialEq)]
struct Mount {
    mount_point: String,
    fstype: String,
    source: String,
}

/// The mount of device `major:minor` whose mount point is the longest prefix of `path` (bind mounts
/// can show one device several times).
fn mount_of(mountinfo: &str, major: u64, minor: u64, path: &Path) -> Option<Mount> {
    let device = format!("{major}:{minor}");
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 2 || left[2] != device {
            continue;
        }
        // Mount points escape spaces and other bytes as octal (\040).
        let mount = Mount {
            mount_point: left[4].replace("\\040", " "),
            fstype: right[0].to_owned(),
            source: right[1].to_owned(),
        };
        let length = |mount: &Mount| mount.mount_point.len();
        let covers = path.starts_with(&mount.mount_point);
        let better = match &best {
            None => true,
            Some(current) => {
                covers && (!path.starts_with(&current.mount_point) || length(&mount) > length(current))
            }
        };
        if better {
            best = Some(mount);
        }
    }
    best
}

/// "MODEL or DRIVER, SIZE" of the whole disk behind block device `major:minor`, from /sys.
fn block_device(major: u64, minor: u64) -> Option<String> {
    let node = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    // A partition's directory sits inside its disk's.
    let disk = if node.join("partition").exists() {
        node.parent()?.to_path_buf()
    } else {
        node
    };
    let read = |name: &str| {
        std::fs::read_to_string(disk.join(name))
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    let model = read("device/model").or_else(|| {
        let driver = std::fs::read_link(disk.join("device/driver")).ok()?;
        Some(driver.file_name()?.to_string_lossy().into_owned())
    });
    let size = read("size")
        .and_then(|sectors| sectors.parse::<u64>().ok())
        .map(|sectors| format!("{:.0} GiB", sectors as f64 * 512.0 / 1_073_741_824.0));
    let parts: Vec<String> = model.into_iter().chain(size).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_minutes() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(1_795_686_060), "2026-11-26 09:41 UTC");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_minute(4_107_542_399), "2100-02-28 23:59 UTC");
    }

    #[test]
    fn cpu_and_memory_from_proc_text() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu vme hypervisor lahf_lm\n\n\
                       processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu vme hypervisor\n";
        assert_eq!(
            cpu_summary(cpuinfo),
            "Intel(R) Xeon(R) Processor, 2 CPUs (virtual)"
        );
        let bare = "processor : 0\nmodel name : AMD EPYC\nflags : fpu sse\n";
        assert_eq!(cpu_summary(bare), "AMD EPYC, 1 CPU");
        let meminfo = "MemTotal:       24684084 kB\nMemFree:         1000 kB\n";
        assert!((mem_total_gib(meminfo).unwrap() - 23.54).abs() < 0.01);
        assert_eq!(mem_total_gib("nothing"), None);
    }

    #[test]
    fn mount_is_the_longest_covering_mount_point_of_the_device() {
        let mountinfo = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                         27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                         40 27 254:0 /srv /mnt/bind rw - ext4 /dev/vda rw\n\
                         41 27 254:1 / /var/tmp rw,relatime shared:5 - xfs /dev/vdb1 rw\n\
                         42 27 0:30 / /my\\040spool rw - tmpfs tmpfs rw\n";
        let mount = mount_of(mountinfo, 254, 0, Path::new("/var/tmp")).unwrap();
        assert_eq!(
            mount,
            Mount {
                mount_point: "/".into(),
                fstype: "ext4".into(),
                source: "/dev/vda".into()
            }
        );
        let mount = mount_of(mountinfo, 254, 0, Path::new("/mnt/bind/x")).unwrap();
        assert_eq!(mount.mount_point, "/mnt/bind");
        assert_eq!(
            mount_of(mountinfo, 254, 1, Path::new("/var/tmp")).unwrap().fstype,
            "xfs"
        );
        let mount = mount_of(mountinfo, 0, 30, Path::new("/my spool/q")).unwrap();
        assert_eq!(mount.mount_point, "/my spool");
        assert_eq!(mount_of(mountinfo, 8, 0, Path::new("/")), None);
    }

    #[test]
    fn collect_describes_this_machine() {
        let run = RunInfo::collect_with_spool("./x bench".into(), std::path::Path::new("/var/tmp"));
        assert_eq!(run.command, "./x bench");
        assert!(run.extra.is_empty());
        assert_eq!(run.date.len(), "2026-11-26 09:41 UTC".len(), "{}", run.date);
        assert!(
            run.date.ends_with(" UTC") && run.date.starts_with("20"),
            "{}",
            run.date
        );
        assert!(run.machine.contains(" GiB RAM, Linux "), "{}", run.machine);
        assert!(run.machine.contains(", spool /var/tmp: "), "{}", run.machine);
    }
}
