//! What this crate's processes ask of Linux beyond `mmipc_benchkit::os` (pinning, the
//! machine description): the peers' watchdog, CLOCK_MONOTONIC shared between processes,
//! CPU time, `kill -9`, resident and shared memory from /proc, and the segment files of an
//! mmipc channel.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

/// Makes this peer process die with its parent (the harness), and exit on its own once
/// `limit` has passed, so that no bug can leave a process spinning or blocked forever.
pub fn peer_watchdog(limit: Duration) {
    // The parent may have died before: then we were re-parented already.
    if !mmipc_benchkit::os::die_with_parent() {
        eprintln!("mmipc-bench peer: the harness is gone; exiting");
        std::process::exit(3);
    }
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!(
                "mmipc-bench peer {}: still running after {:.0} s; the watchdog ends it",
                std::process::id(),
                limit.as_secs_f64()
            );
            std::process::exit(4);
        });
    if let Err(e) = spawned {
        eprintln!("mmipc-bench peer: cannot start the watchdog thread: {e}");
        std::process::exit(3);
    }
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine, so that a time
/// taken in one process can be subtracted from one taken in another.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(r, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (user + system) used so far by every thread of this process, in nanoseconds.
pub fn cpu_ns() -> u64 {
    Usage::of(libc::RUSAGE_SELF).cpu_ns
}

/// CPU time and context switches, from getrusage: of the calling thread
/// ([`Usage::thread`]) or of the difference between two readings ([`Usage::since`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// User + system CPU time, ns.
    pub cpu_ns: u64,
    /// Voluntary context switches: in a benchmark loop, almost only futex sleeps.
    pub vcsw: u64,
    /// Involuntary context switches (preemptions).
    pub ivcsw: u64,
}

impl Usage {
    /// What the calling thread has used so far.
    pub fn thread() -> Usage {
        Usage::of(libc::RUSAGE_THREAD)
    }

    /// What every thread of this process has used so far.
    pub fn process() -> Usage {
        Usage::of(libc::RUSAGE_SELF)
    }

    fn of(who: libc::c_int) -> Usage {
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `ru` is a writable rusage; the kernel fills it in.
        if unsafe { libc::getrusage(who, ru.as_mut_ptr()) } != 0 {
            return Usage::default();
        }
        // SAFETY: zero-initialised plain integers, filled by the successful call.
        let ru = unsafe { ru.assume_init() };
        let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
        Usage {
            cpu_ns: ns(ru.ru_utime) + ns(ru.ru_stime),
            vcsw: ru.ru_nvcsw as u64,
            ivcsw: ru.ru_nivcsw as u64,
        }
    }

    /// What was used between `before` and this reading.
    pub fn since(self, before: Usage) -> Usage {
        Usage {
            cpu_ns: self.cpu_ns.saturating_sub(before.cpu_ns),
            vcsw: self.vcsw.saturating_sub(before.vcsw),
            ivcsw: self.ivcsw.saturating_sub(before.ivcsw),
        }
    }
}

/// Sends SIGKILL to process `pid`.
pub fn kill9(pid: u32) -> Result<()> {
    // SAFETY: kill takes a process id and a signal number; no memory is passed.
    let r = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    if r != 0 {
        bail!("kill -9 {pid}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Resident memory of this process, from /proc/self/status and /proc/self/maps.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemUse {
    /// `VmRSS`: resident set, KiB.
    pub rss_kib: u64,
    /// `RssShmem`: resident shared memory (tmpfs, shm) pages, KiB.
    pub shmem_kib: u64,
    /// Size of every mapping of a file under /dev/shm (virtual, touched or not), KiB.
    pub shm_mapped_kib: u64,
}

/// What this process uses now.
pub fn mem_use() -> Result<MemUse> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/self/status"))?;
        let kib = line.trim().trim_end_matches("kB").trim();
        Ok(kib.parse()?)
    };
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut shm_mapped = 0;
    for line in maps.lines() {
        // "start-end perms offset dev inode   path"
        let mut f = line.split_whitespace();
        let (Some(range), Some(path)) = (f.next(), f.nth(4)) else {
            continue;
        };
        if !path.starts_with("/dev/shm/") {
            continue;
        }
        if let Some((a, b)) = range.split_once('-')
            && let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            shm_mapped += (b - a) / 1024;
        }
    }
    Ok(MemUse {
        rss_kib: field("VmRSS")?,
        shmem_kib: field("RssShmem")?,
        shm_mapped_kib: shm_mapped,
    })
}

/// The size of a memory page, bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// A shared-memory segment file of an mmipc channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// File name (`ring-<pub>-<sub>-<gen>`, `sub-<id>.bell`).
    pub name: String,
    /// File size, bytes: what the segment can grow to.
    pub bytes: u64,
    /// Bytes the file system has allocated (tmpfs: pages touched so far).
    pub allocated: u64,
}

impl Segment {
    /// A ring between a publisher and a subscriber.
    pub fn is_ring(&self) -> bool {
        self.name.starts_with("ring-")
    }

    /// A subscriber's doorbell.
    pub fn is_bell(&self) -> bool {
        self.name.ends_with(".bell")
    }

    /// The file size rounded up to whole pages: what tmpfs holds once every page is touched.
    pub fn pages_bytes(&self) -> u64 {
        self.bytes.div_ceil(page_size()) * page_size()
    }
}

/// The segment files (rings and doorbells) in an mmipc channel directory.
pub fn segments(dir: &Path) -> Result<Vec<Segment>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        let seg = Segment {
            name,
            bytes: meta.len(),
            allocated: meta.blocks() * 512,
        };
        if meta.is_file() && (seg.is_ring() || seg.is_bell()) {
            out.push(seg);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_and_memory_of_this_process() {
        let (t0, c0) = (mono_ns(), cpu_ns());
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        assert!(mono_ns() - t0 >= 20_000_000);
        assert!(cpu_ns() > c0);
        let u0 = Usage::thread();
        std::thread::sleep(Duration::from_millis(2));
        assert!(Usage::thread().since(u0).vcsw >= 1);
        let m = mem_use().unwrap();
        assert!(m.rss_kib > 0 && m.shmem_kib <= m.rss_kib, "{m:?}");
        assert!(page_size().is_power_of_two());
    }

    #[test]
    fn segment_files_are_found_and_rounded_to_pages() {
        let dir = tempfile::tempdir().unwrap();
        for (name, len) in [("ring-a-b-1", 5000), ("sub-b.bell", 64), ("pub-a.json", 10)] {
            let f = std::fs::File::create(dir.path().join(name)).unwrap();
            f.set_len(len).unwrap();
        }
        let segs = segments(dir.path()).unwrap();
        let names: Vec<&str> = segs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ring-a-b-1", "sub-b.bell"]);
        assert!(segs[0].is_ring() && segs[1].is_bell());
        assert_eq!(
            segs[0].pages_bytes(),
            5000u64.div_ceil(page_size()) * page_size()
        );
    }
}
