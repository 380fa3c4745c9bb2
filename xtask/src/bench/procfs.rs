//! What /proc says about a process, its BPF file descriptors and the machine.
use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, Result, anyhow};

/// utime + stime, in clock ticks, from the text of `/proc/PID/stat`.
pub(super) fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from the last ')'. Field 3 (state) comes first after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/PID/status` (`VmHWM`, `VmRSS`, ...).
pub(super) fn status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// The fields of a BPF program's `/proc/PID/fdinfo/FD`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ProgFdInfo {
    pub prog_id: u32,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// `Some` for the fdinfo of a BPF program.
pub(super) fn parse_prog_fdinfo(text: &str) -> Option<ProgFdInfo> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    Some(ProgFdInfo {
        prog_id: field("prog_id")?.parse().ok()?,
        run_time_ns: field("run_time_ns")?.parse().ok()?,
        run_cnt: field("run_cnt")?.parse().ok()?,
    })
}

/// Every BPF program process `pid` holds, by program id.
pub(super) fn process_programs(pid: u32) -> Result<BTreeMap<u32, ProgFdInfo>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        // An fd closed between the listing and the read is fine to miss.
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        if let Some(p) = parse_prog_fdinfo(&text) {
            out.insert(p.prog_id, p);
        }
    }
    Ok(out)
}

pub(super) fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    stat_cpu_ticks(&text).ok_or_else(|| anyhow!("cannot parse {path}"))
}

/// A `kB` field (`VmHWM`, `VmRSS`) of `/proc/PID/status`.
pub(super) fn status_field_kb(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status_kb(&text, key).ok_or_else(|| anyhow!("no {key} in {path}"))
}

/// Clock ticks per second (`_SC_CLK_TCK`).
pub(super) fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The 1, 5 and 15 minute load averages.
pub(super) fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut f = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([f.next()??, f.next()??, f.next()??])
}

pub(super) fn loadavg() -> [f64; 3] {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| parse_loadavg(&t))
        .unwrap_or([f64::NAN; 3])
}

/// The first `model name` of /proc/cpuinfo.
pub(super) fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

pub(super) fn read_or(path: impl AsRef<Path>, default: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| default.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_of_a_name_with_spaces_and_parens() {
        let stat = "4242 (flannel (x) probe) S 1 4242 4242 0 -1 4194560 1335 0 0 0 \
                    17 5 0 0 20 0 1 0 123456 12345678 2000 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some(22));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn status_lines() {
        let status =
            "Name:\tflannel-probe\nVmPeak:\t  30000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t   12000 kB\n";
        assert_eq!(status_kb(status, "VmHWM"), Some(12345));
        assert_eq!(status_kb(status, "VmRSS"), Some(12000));
        assert_eq!(status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn program_fdinfo() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2083\nprog_type:\t3\n\
                    prog_jited:\t1\nprog_tag:\t5e1fd4bba6ea79c0\nmemlock:\t4096\nprog_id:\t187\n\
                    run_time_ns:\t123456\nrun_cnt:\t789\nrecursion_misses:\t0\nverified_insns:\t411\n";
        assert_eq!(
            parse_prog_fdinfo(prog),
            Some(ProgFdInfo {
                prog_id: 187,
                run_time_ns: 123456,
                run_cnt: 789
            })
        );
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t5\nkey_size:\t8\nmap_id:\t55\n";
        assert_eq!(parse_prog_fdinfo(map), None);
    }

    #[test]
    fn machine_files() {
        assert_eq!(
            parse_loadavg("2.55 3.35 3.54 10/166 5536\n"),
            Some([2.55, 3.35, 3.54])
        );
        assert_eq!(parse_loadavg("x"), None);
        let cpuinfo =
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t: fpu\n";
        assert_eq!(parse_cpu_model(cpuinfo).as_deref(), Some("AMD EPYC"));
    }
}
