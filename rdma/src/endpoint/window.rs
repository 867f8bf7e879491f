//! Send windows and receive credits of one RDMA connection (DESIGN.md §5), wire-compatible with
//! brpc: the peer may be brpc's `RdmaEndpoint`.
//!
//! # The accounting
//!
//! Each side posts `rq` receive buffers and may have `sq` sends outstanding. [`RESERVED_WR_NUM`]
//! (3) of each are kept for *pure ACKs* (zero-byte sends with immediate), so:
//! - `local capacity = min(local sq, remote rq) − 3`: data messages this side may have in flight;
//! - `remote capacity = min(local rq, remote sq) − 3`: the same, seen from the peer.
//!
//! Two windows gate a data send, both starting at the local capacity:
//! - **remote RQ window** (credits): receive buffers the peer has posted for us. A send takes
//!   one; the peer gives them back in the immediate of its sends: every data message is a
//!   send-with-immediate whose immediate is the number of receives the sender re-posted since it
//!   last said so.
//! - **SQ window**: free send-queue slots. A send takes one; a *signaled* send's completion
//!   gives back every slot since the previous signaled one (its `wr_id` carries that count).
//!   Only every `capacity/4`-th send is signaled, to keep completions rare.
//!
//! Credits the application side re-posts accumulate in `pending credits`; they ride on the next
//! data send, or, once they exceed half the remote capacity, go out in a pure ACK (if one of the
//! three reserved send slots is free; an ACK's completion frees its slot and retries).
//! Receives consumed by pure ACKs are re-posted without credit: the three spare receive buffers
//! per side absorb them.
//!
//! A send is *solicited* (wakes a peer that arms for solicited completions only) when either
//! window is about to run out, at the end of a batch, or when enough unsolicited messages,
//! credits or bytes piled up (`capacity/4`, `capacity/4`, 1 MiB).
//!
//! # Invariants (checked by the property tests)
//!
//! - neither window goes below 0 or above its capacity; a peer that returns more credits than
//!   it could owe is a protocol error ([`WindowError::CreditOverflow`]), not a wrap-around;
//! - as long as both sides follow this accounting, a message never finds the peer without a
//!   posted receive (no RNR), and neither send queue overflows.

use crate::handshake::MIN_QP_SIZE;
use std::fmt;

/// Send and receive slots kept for pure ACKs (brpc's `RESERVED_WR_NUM`).
pub const RESERVED_WR_NUM: u32 = 3;

/// Unsolicited bytes after which a send is solicited anyway.
const UNSOLICITED_BYTES_MAX: u64 = 1 << 20;

/// Why a window could not be set up or updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowError {
    /// A queue size is below [`MIN_QP_SIZE`].
    QueueTooSmall {
        /// Which queue (`"local sq"`, `"remote rq"`, ...).
        which: &'static str,
        /// Its size.
        size: u16,
    },
    /// The peer returned more credits than it could owe.
    CreditOverflow {
        /// Credits after the update.
        credits: u64,
        /// The most there can be.
        capacity: u32,
    },
    /// A completion returned more send slots than are in use.
    SlotOverflow {
        /// Slots after the update.
        slots: u64,
        /// The most there can be.
        capacity: u32,
    },
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowError::QueueTooSmall { which, size } => {
                write!(f, "{which} size {size} is below the minimum {MIN_QP_SIZE}")
            }
            WindowError::CreditOverflow { credits, capacity } => write!(
                f,
                "peer returned credits up to {credits}, more than the window of {capacity}"
            ),
            WindowError::SlotOverflow { slots, capacity } => write!(
                f,
                "send completions free {slots} slots, more than the window of {capacity}"
            ),
        }
    }
}

impl std::error::Error for WindowError {}

/// How to post one data send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendPlan {
    /// The immediate: credits returned to the peer.
    pub imm: u32,
    /// Set the solicited flag.
    pub solicited: bool,
    /// `Some(n)`: signal this send, with `wr_id = n`, the number of send slots its completion
    /// frees; `None`: unsignaled.
    pub signaled: Option<u32>,
}

/// The flow-control state of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    local_capacity: u32,
    remote_capacity: u32,
    remote_rq_window: u32,
    sq_window: u32,
    sq_imm_window: u32,
    pending_credits: u32,
    sq_unsignaled: u32,
    unsolicited: u32,
    unsolicited_bytes: u64,
    accumulated_ack: u32,
}

impl Window {
    /// The windows of a connection whose local queues are `local_sq`/`local_rq` and whose peer
    /// announced `remote_sq`/`remote_rq` in its hello.
    pub fn new(
        local_sq: u16,
        local_rq: u16,
        remote_sq: u16,
        remote_rq: u16,
    ) -> Result<Window, WindowError> {
        for (which, size) in [
            ("local sq", local_sq),
            ("local rq", local_rq),
            ("remote sq", remote_sq),
            ("remote rq", remote_rq),
        ] {
            if size < MIN_QP_SIZE {
                return Err(WindowError::QueueTooSmall { which, size });
            }
        }
        let local_capacity = u32::from(local_sq.min(remote_rq)) - RESERVED_WR_NUM;
        let remote_capacity = u32::from(local_rq.min(remote_sq)) - RESERVED_WR_NUM;
        Ok(Window {
            local_capacity,
            remote_capacity,
            remote_rq_window: local_capacity,
            sq_window: local_capacity,
            sq_imm_window: RESERVED_WR_NUM,
            pending_credits: 0,
            sq_unsignaled: 0,
            unsolicited: 0,
            unsolicited_bytes: 0,
            accumulated_ack: 0,
        })
    }

    /// Data messages this side may have in flight.
    pub fn local_capacity(&self) -> u32 {
        self.local_capacity
    }

    /// Data messages the peer may have in flight.
    pub fn remote_capacity(&self) -> u32 {
        self.remote_capacity
    }

    /// Credits: receives the peer has posted for us.
    pub fn remote_rq_window(&self) -> u32 {
        self.remote_rq_window
    }

    /// Free send-queue slots for data.
    pub fn sq_window(&self) -> u32 {
        self.sq_window
    }

    /// Free send-queue slots for pure ACKs.
    pub fn sq_imm_window(&self) -> u32 {
        self.sq_imm_window
    }

    /// Credits re-posted here and not yet returned to the peer.
    pub fn pending_credits(&self) -> u32 {
        self.pending_credits
    }

    /// Whether a data send may be posted now (brpc's `IsWritable`).
    pub fn can_send(&self) -> bool {
        self.remote_rq_window > 0 && self.sq_window > 0
    }

    /// Takes a credit and a send slot for one data message of `bytes` bytes; `last_in_batch`
    /// when nothing else is queued behind it. `None` if either window is empty (wait for
    /// completions).
    pub fn prepare_send(&mut self, bytes: u32, last_in_batch: bool) -> Option<SendPlan> {
        if !self.can_send() {
            return None;
        }
        let imm = std::mem::take(&mut self.pending_credits);
        let mut solicited = self.remote_rq_window == 1 || self.sq_window == 1 || last_in_batch;
        if !solicited {
            solicited = self.unsolicited > self.local_capacity / 4
                || self.accumulated_ack > self.remote_capacity / 4
                || self.unsolicited_bytes > UNSOLICITED_BYTES_MAX;
        }
        if solicited {
            self.unsolicited = 0;
            self.unsolicited_bytes = 0;
            self.accumulated_ack = 0;
        } else {
            self.unsolicited += 1;
            self.unsolicited_bytes += u64::from(bytes);
            self.accumulated_ack = self.accumulated_ack.saturating_add(imm);
        }
        self.sq_unsignaled += 1;
        let signaled = if self.sq_unsignaled >= (self.local_capacity / 4).max(1) {
            Some(std::mem::take(&mut self.sq_unsignaled))
        } else {
            None
        };
        self.remote_rq_window -= 1;
        self.sq_window -= 1;
        Some(SendPlan {
            imm,
            solicited,
            signaled,
        })
    }

    /// A signaled data send completed; `covered` is its `wr_id` (from [`SendPlan::signaled`]).
    pub fn on_send_completed(&mut self, covered: u32) -> Result<(), WindowError> {
        let slots = u64::from(self.sq_window) + u64::from(covered);
        if slots > u64::from(self.local_capacity) {
            return Err(WindowError::SlotOverflow {
                slots,
                capacity: self.local_capacity,
            });
        }
        self.sq_window = slots as u32;
        Ok(())
    }

    /// A pure ACK's send completed (its slot is free again). Returns the credits of a pure ACK
    /// to send now, if one is due.
    pub fn on_ack_completed(&mut self) -> Result<Option<u32>, WindowError> {
        if self.sq_imm_window >= RESERVED_WR_NUM {
            return Err(WindowError::SlotOverflow {
                slots: u64::from(self.sq_imm_window) + 1,
                capacity: RESERVED_WR_NUM,
            });
        }
        self.sq_imm_window += 1;
        Ok(self.take_pure_ack())
    }

    /// A receive completed and its buffer was re-posted: `byte_len` bytes (0 for a pure ACK)
    /// and the immediate, if any. Applies the returned credits, counts a credit to return for a
    /// data message, and returns the credits of a pure ACK to send now, if one is due.
    pub fn on_recv(&mut self, byte_len: u32, imm: Option<u32>) -> Result<Option<u32>, WindowError> {
        if let Some(credits) = imm.filter(|c| *c > 0) {
            let total = u64::from(self.remote_rq_window) + u64::from(credits);
            if total > u64::from(self.local_capacity) {
                return Err(WindowError::CreditOverflow {
                    credits: total,
                    capacity: self.local_capacity,
                });
            }
            self.remote_rq_window = total as u32;
        }
        if byte_len > 0 {
            self.pending_credits += 1;
        }
        Ok(self.take_pure_ack())
    }

    /// Takes a reserved slot and the pending credits for a pure ACK if more than half the
    /// remote capacity is pending.
    fn take_pure_ack(&mut self) -> Option<u32> {
        if self.pending_credits > self.remote_capacity / 2 && self.sq_imm_window > 0 {
            self.sq_imm_window -= 1;
            Some(std::mem::take(&mut self.pending_credits))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
