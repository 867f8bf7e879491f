//! A fiber that overflows its stack must crash the process cleanly with a message (never
//! corrupt memory silently). Run in a subprocess: this test re-executes its own binary.

use std::process::Command;

use spindle_runtime::{Builder, StackSize};

const CHILD_ENV: &str = "SPINDLE_OVERFLOW_CHILD";

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = std::hint::black_box([n as u8; 512]);
    if n == 0 {
        return buf[0] as u64;
    }
    recurse(n - 1).wrapping_add(buf[(n % 512) as usize] as u64)
}

#[test]
fn stack_overflow_is_a_clean_crash() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // Child: overflow a small (32 KiB) fiber stack.
        let h = Builder::new()
            .stack_size(StackSize::Small)
            .spawn(|| recurse(1 << 20));
        let _ = h.join();
        unreachable!("the overflow should have aborted the process");
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "stack_overflow_is_a_clean_crash",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "child survived a stack overflow");
    assert!(
        stderr.contains("fiber stack overflow"),
        "no message; stderr: {stderr}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "status {:?}",
            out.status
        );
    }
}
