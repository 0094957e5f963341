//! What a benchmark asks of the operating system: the CPUs it may use, pinning a thread to
//! one, peer processes that die with their parent, and a description of the machine (CPU
//! model and count, kernel, date) for the head of a report. Linux does all of it; elsewhere
//! the CPU list is empty, pinning fails and die-with-parent does nothing.

use std::time::{SystemTime, UNIX_EPOCH};

/// CPUs this process may run on (empty where that cannot be asked).
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> Vec<usize> {
    let mut set = std::mem::MaybeUninit::<libc::cpu_set_t>::zeroed();
    // SAFETY: `set` is a writable cpu_set_t of the size passed; the kernel writes at most that
    // many bytes into it.
    let r = unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set.as_mut_ptr())
    };
    if r != 0 {
        return Vec::new();
    }
    // SAFETY: a cpu_set_t is a plain bit array, so the zeroed value is initialised, and the
    // call succeeded in filling it.
    let set = unsafe { set.assume_init() };
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the number of bits in the set.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// CPUs this process may run on (empty where that cannot be asked).
#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// Two different CPUs this process may run on (the first two), for a benchmark's two sides;
/// `None` if `pin` is false or fewer than two are allowed.
pub fn cpu_pair(pin: bool) -> Option<(usize, usize)> {
    let cpus = allowed_cpus();
    (pin && cpus.len() >= 2).then(|| (cpus[0], cpus[1]))
}

/// Pins the calling thread (and the threads it starts afterwards) to `cpu`.
///
/// # Errors
///
/// If `cpu` is out of range, the system refuses, or this is not Linux.
#[cfg(target_os = "linux")]
pub fn pin_to(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    let set = std::mem::MaybeUninit::<libc::cpu_set_t>::zeroed();
    // SAFETY: a zeroed cpu_set_t is the empty set; `cpu` is below CPU_SETSIZE (checked above),
    // so CPU_SET stays within the bit array.
    let set = unsafe {
        let mut set = set.assume_init();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; the kernel only reads it.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to `cpu`: not possible outside Linux.
///
/// # Errors
///
/// Always ([`std::io::ErrorKind::Unsupported`]).
#[cfg(not(target_os = "linux"))]
pub fn pin_to(_cpu: usize) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Makes this (peer) process receive SIGKILL when its parent dies, so that an interrupted
/// benchmark leaves nothing spinning. Returns false if the parent is gone already (this
/// process was re-parented before the request took effect). Does nothing outside Linux.
pub fn die_with_parent() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_PDEATHSIG takes a signal number; no memory is passed.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } == 1 {
            return false;
        }
    }
    true
}

/// "AMD EPYC ... (2 CPUs)": the CPU model from /proc/cpuinfo and the number of CPUs the
/// machine has.
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name")
        .or_else(|| field("Model"))
        .or_else(|| field("cpu model"))
        .unwrap_or_else(|| "unknown CPU".into());
    // The machine's CPUs, not those this thread may use (it may be pinned already).
    let count = match info.lines().filter(|l| l.starts_with("processor")).count() {
        0 => std::thread::available_parallelism().map_or(0, |n| n.get()),
        n => n,
    };
    format!("{model} ({count} CPUs)")
}

/// "Linux 6.1.0-...", or the name of the operating system.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| format!("Linux {}", r.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string())
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    utc(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400 + 3_660), "2000-02-29 01:01 UTC");
        assert!(utc_now().ends_with(" UTC"));
    }

    #[test]
    fn the_machine_is_described() {
        assert!(cpu_model().ends_with("CPUs)"));
        assert!(!kernel().is_empty());
        if cfg!(target_os = "linux") {
            assert!(!allowed_cpus().is_empty());
        }
        assert_eq!(cpu_pair(false), None);
    }
}
