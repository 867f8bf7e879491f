//! The fabric's completion queue: a locked deque of completions plus an eventfd for readiness.
//!
//! Invariants:
//! - completions leave in the order they were pushed;
//! - the eventfd is written only on a push that finds the queue armed (and, when armed for
//!   solicited events only, the completion is solicited or failed), and the push disarms it:
//!   one arm, at most one notification — so polling mode, which never arms, costs no syscall;
//! - a queue pushed beyond its capacity is overrun (as a hardware CQ overflow is an error): the
//!   next `poll` reports it.

use crate::verbs::{CompletionQueue, VerbsError, WorkCompletion};
use parking_lot::Mutex;
use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Arming state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    No,
    Any,
    SolicitedOnly,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<WorkCompletion>,
    armed: Armed,
    overrun: bool,
}

/// A software completion queue.
#[derive(Debug)]
pub struct FabricCq {
    state: Mutex<State>,
    capacity: usize,
    event_fd: OwnedFd,
}

impl FabricCq {
    /// A queue of `capacity` entries (at least 1).
    pub fn new(capacity: u32) -> Result<FabricCq, VerbsError> {
        if capacity == 0 {
            return Err(VerbsError::InvalidArgument(
                "completion queue capacity must be at least 1".into(),
            ));
        }
        // SAFETY: plain syscall without pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(FabricCq {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                armed: Armed::No,
                overrun: false,
            }),
            capacity: capacity as usize,
            // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
            event_fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Appends a completion; notifies if armed for it.
    pub(crate) fn push(&self, wc: WorkCompletion, solicited: bool) {
        let notify = {
            let mut s = self.state.lock();
            if s.queue.len() >= self.capacity {
                s.overrun = true;
            }
            s.queue.push_back(wc);
            let wanted = match s.armed {
                Armed::No => false,
                Armed::Any => true,
                Armed::SolicitedOnly => solicited || !wc.status.is_ok(),
            };
            if wanted {
                s.armed = Armed::No;
            }
            wanted
        };
        if notify {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter (EAGAIN,
            // after 2^64-2 unacknowledged events) is impossible in practice and harmless: the fd
            // is readable anyway.
            unsafe {
                libc::write(
                    self.event_fd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
    }
}

impl CompletionQueue for FabricCq {
    fn poll(&self, out: &mut Vec<WorkCompletion>, max: usize) -> Result<usize, VerbsError> {
        let mut s = self.state.lock();
        if s.overrun {
            s.overrun = false;
            return Err(VerbsError::InvalidState(format!(
                "completion queue overrun: more than {} completions were pending",
                self.capacity
            )));
        }
        let n = max.min(s.queue.len());
        out.extend(s.queue.drain(..n));
        Ok(n)
    }

    fn fd(&self) -> RawFd {
        self.event_fd.as_raw_fd()
    }

    fn arm(&self, solicited_only: bool) -> Result<(), VerbsError> {
        self.state.lock().armed = if solicited_only {
            Armed::SolicitedOnly
        } else {
            Armed::Any
        };
        Ok(())
    }

    fn ack_events(&self) -> Result<u32, VerbsError> {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our nonblocking eventfd.
        let n = unsafe {
            libc::read(
                self.event_fd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e.into())
            };
        }
        Ok(u32::try_from(v).unwrap_or(u32::MAX))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::{wait_readable, WcOpcode, WcStatus};
    use std::time::Duration;

    fn wc(id: u64, status: WcStatus) -> WorkCompletion {
        WorkCompletion {
            wr_id: id,
            status,
            opcode: WcOpcode::Recv,
            byte_len: 0,
            imm_data: None,
            qp_num: 1,
        }
    }

    #[test]
    fn arm_notifies_once_and_solicited_only_waits() {
        let cq = FabricCq::new(4).unwrap();
        assert!(FabricCq::new(0).is_err());
        cq.push(wc(1, WcStatus::Success), false);
        assert!(!wait_readable(cq.fd(), Duration::ZERO).unwrap());
        cq.arm(true).unwrap();
        cq.push(wc(2, WcStatus::Success), false);
        assert!(!wait_readable(cq.fd(), Duration::ZERO).unwrap());
        cq.push(wc(3, WcStatus::Success), true);
        assert!(wait_readable(cq.fd(), Duration::ZERO).unwrap());
        assert_eq!(cq.ack_events().unwrap(), 1);
        assert_eq!(cq.ack_events().unwrap(), 0);
        cq.push(wc(4, WcStatus::Success), true); // not armed
        assert!(!wait_readable(cq.fd(), Duration::ZERO).unwrap());
        let mut out = Vec::new();
        assert_eq!(cq.poll(&mut out, 3).unwrap(), 3);
        assert_eq!(cq.poll(&mut out, 3).unwrap(), 1);
        let ids: Vec<u64> = out.iter().map(|w| w.wr_id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        // An error notifies a solicited-only arm.
        cq.arm(true).unwrap();
        cq.push(wc(5, WcStatus::WrFlushError), false);
        assert!(wait_readable(cq.fd(), Duration::ZERO).unwrap());
    }

    #[test]
    fn overrun_is_reported() {
        let cq = FabricCq::new(1).unwrap();
        cq.push(wc(1, WcStatus::Success), false);
        cq.push(wc(2, WcStatus::Success), false);
        let mut out = Vec::new();
        assert!(cq.poll(&mut out, 8).is_err());
        assert_eq!(cq.poll(&mut out, 8).unwrap(), 2);
    }
}
