//! Helpers shared by the benchmark binaries (`src/bin/`).

use std::time::Duration;

/// User + system CPU time this process has used so far, all threads together (`getrusage`).
pub fn process_cpu_time() -> Duration {
    // SAFETY: `getrusage` only writes the `rusage` it is given, and all-zero is a valid value
    // of that plain C struct; RUSAGE_SELF is always a valid target.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
