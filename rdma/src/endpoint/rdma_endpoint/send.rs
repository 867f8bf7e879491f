//! The write path: IOBuf pieces into send-with-immediate messages.
//!
//! A message takes bytes from the front of the caller's IOBufs up to the peer's block size and
//! the scatter/gather limit. A piece in a region of this context's pools (its `meta` is that
//! region's lkey) becomes an entry of its own, merged with the previous one when adjacent in
//! the same region; runs of other pieces are copied into a fresh 8 KiB pool block each. The
//! message's bytes are then cut into the in-flight entry, which keeps them (and the copy
//! blocks) alive until a signaled completion covers the send.

use super::{InFlight, RdmaEndpoint, State};
use crate::endpoint::context::{PoolBlock, STAGING_BLOCK_SIZE};
use crate::endpoint::EndpointError;
use crate::verbs::{SendOp, SendWr, Sge};
use spindle_iobuf::IOBuf;
use std::io;

/// Where the bytes of one scatter/gather entry come from.
enum Slot {
    /// Straight from a registered piece.
    Registered(Sge),
    /// Copied from unregistered pieces (`parts[first..first + count]`) into a fresh block.
    Copy {
        /// Index of its first range in [`MessagePlan::parts`].
        first: usize,
        /// Number of ranges.
        count: usize,
        /// Bytes in all of them (at most one block).
        len: usize,
    },
}

/// One message to post: its entries and length.
struct MessagePlan {
    /// The scatter/gather entries, in order.
    slots: Vec<Slot>,
    /// Unregistered ranges to copy, in order.
    parts: Vec<(*const u8, usize)>,
    /// Bytes in the message.
    len: usize,
}

impl RdmaEndpoint {
    /// Posts as much of `bufs` (front first) as the windows allow, as send-with-immediate
    /// messages of at most the peer's block size, and cuts exactly the bytes posted. `Ok(n > 0)`
    /// bytes posted (or `Ok(0)` if `bufs` are empty); `Err(WouldBlock)` when no window is open
    /// (a later poll reports [`PollOutcome::window_opened`](super::PollOutcome::window_opened)); other errors: the connection is
    /// broken.
    pub fn cut_from_iobufs(&self, bufs: &mut [&mut IOBuf]) -> io::Result<usize> {
        let mut st = self.state.lock();
        if let Some(e) = &st.broken {
            return Err(e.clone().into());
        }
        let mut remaining: usize = bufs.iter().map(|b| b.len()).sum();
        let mut total = 0;
        while remaining > 0 {
            if !st.window.can_send() {
                if total == 0 {
                    st.writer_blocked = true;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                break;
            }
            let plan = self.plan_message(bufs);
            if plan.len == 0 {
                break;
            }
            let n = match self.post_message(&mut st, bufs, plan, remaining) {
                Ok(n) => n,
                // Out of copy blocks: send the rest later (blocks come back as sends complete).
                Err(EndpointError::OutOfMemory(_)) if total > 0 => break,
                // Nothing posted yet, but completions will free copy blocks: wait for them.
                Err(EndpointError::OutOfMemory(_)) if !st.in_flight.is_empty() => {
                    st.writer_blocked = true;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Err(e) => return Err(self.fail(&mut st, e).into()),
            };
            remaining -= n;
            total += n;
        }
        Ok(total)
    }

    /// Chooses the bytes of the next message: registered pieces become entries of their own
    /// (adjacent ones merged), runs of unregistered pieces share a copy block; stops at the
    /// peer's block size or the entry limit.
    fn plan_message(&self, bufs: &[&mut IOBuf]) -> MessagePlan {
        let mut plan = MessagePlan {
            slots: Vec::new(),
            parts: Vec::new(),
            len: 0,
        };
        'pieces: for piece in bufs.iter().flat_map(|b| b.pieces()) {
            let bytes = piece.as_slice();
            let lkey = self.ctx.registered_lkey(bytes.as_ptr(), piece.meta());
            let mut off = 0;
            while off < bytes.len() {
                let room = self.max_message - plan.len;
                if room == 0 {
                    break 'pieces;
                }
                let at = bytes[off..].as_ptr();
                let n = match lkey {
                    Some(lkey) => {
                        let n = (bytes.len() - off).min(room).min(u32::MAX as usize);
                        match plan.slots.last_mut() {
                            Some(Slot::Registered(s))
                                if s.lkey == lkey
                                    && s.addr + u64::from(s.length) == at as u64
                                    && s.length as usize + n <= u32::MAX as usize =>
                            {
                                s.length += n as u32;
                            }
                            _ => {
                                if plan.slots.len() == self.max_sge {
                                    break 'pieces;
                                }
                                plan.slots.push(Slot::Registered(Sge {
                                    addr: at as u64,
                                    length: n as u32,
                                    lkey,
                                }));
                            }
                        }
                        n
                    }
                    None => {
                        let parts_len = plan.parts.len();
                        let copy_room = match plan.slots.last() {
                            Some(Slot::Copy { len, .. }) => STAGING_BLOCK_SIZE - len,
                            _ => 0,
                        };
                        if copy_room == 0 {
                            if plan.slots.len() == self.max_sge {
                                break 'pieces;
                            }
                            plan.slots.push(Slot::Copy {
                                first: parts_len,
                                count: 0,
                                len: 0,
                            });
                        }
                        let Some(Slot::Copy { count, len, .. }) = plan.slots.last_mut() else {
                            unreachable!("a copy slot was just ensured");
                        };
                        let n = (bytes.len() - off).min(room).min(STAGING_BLOCK_SIZE - *len);
                        *count += 1;
                        *len += n;
                        plan.parts.push((at, n));
                        n
                    }
                };
                off += n;
                plan.len += n;
            }
        }
        plan
    }

    /// Posts one planned message and cuts its bytes from `bufs` into the in-flight queue;
    /// returns its length.
    fn post_message(
        &self,
        st: &mut State,
        bufs: &mut [&mut IOBuf],
        plan: MessagePlan,
        remaining: usize,
    ) -> Result<usize, EndpointError> {
        // Copy blocks first: running out leaves `bufs` untouched.
        let mut copies = Vec::new();
        for s in &plan.slots {
            if let Slot::Copy { .. } = s {
                copies.push(PoolBlock::alloc(&self.staging_pool).ok_or_else(|| {
                    EndpointError::OutOfMemory(format!(
                        "no {STAGING_BLOCK_SIZE}-byte block to copy unregistered bytes into"
                    ))
                })?);
            }
        }
        // The bytes move into `data`; blocks are shared, so the planned addresses stay valid
        // while `data` lives.
        let mut data = IOBuf::new();
        let mut left = plan.len;
        for b in bufs.iter_mut() {
            if left == 0 {
                break;
            }
            left -= b.cutn(&mut data, left);
        }
        let mut sg_list = Vec::with_capacity(plan.slots.len());
        let mut copy_blocks = copies.iter();
        for s in &plan.slots {
            match s {
                Slot::Registered(sge) => {
                    sg_list.push(*sge);
                    st.stats.zerocopy_sges += 1;
                }
                Slot::Copy { first, count, len } => {
                    let block = copy_blocks.next().expect("one block per copy slot");
                    let mut at = 0;
                    for &(src, n) in &plan.parts[*first..*first + *count] {
                        // SAFETY: `src..src + n` lies in a piece now referenced by `data` (alive,
                        // and not written by anyone); the block is ours, `len <= block size`
                        // bytes, and the two cannot overlap (a block is owned by one user).
                        unsafe {
                            std::ptr::copy_nonoverlapping(src, block.ptr().as_ptr().add(at), n)
                        };
                        at += n;
                    }
                    sg_list.push(Sge {
                        addr: block.ptr().as_ptr() as u64,
                        length: *len as u32,
                        lkey: block.lkey(),
                    });
                    st.stats.bytes_copied_out += *len as u64;
                }
            }
        }
        let last = remaining == plan.len;
        let send = st
            .window
            .prepare_send(plan.len as u32, last)
            .expect("the caller checked can_send");
        self.qp.post_send(&SendWr {
            wr_id: u64::from(send.signaled.unwrap_or(0)),
            sg_list,
            op: SendOp::SendWithImm(send.imm),
            signaled: send.signaled.is_some(),
            solicited: send.solicited,
        })?;
        st.stats.messages_sent += 1;
        st.stats.bytes_sent += plan.len as u64;
        st.in_flight.push_back(InFlight {
            _data: data,
            _copies: copies,
        });
        Ok(plan.len)
    }
}
