//! The receive path: a completed receive is handed over (zero-copy) or copied, a buffer is
//! re-posted in its slot, and only then is its credit counted (a credit promises a posted
//! receive).

use super::{RdmaEndpoint, State, ACK_WR_ID};
use crate::endpoint::context::PoolBlock;
use crate::endpoint::EndpointError;
use crate::verbs::{QueuePair, RecvWr, SendOp, SendWr, Sge, WorkCompletion};
use spindle_iobuf::IOBuf;

/// Posts `block` (its first `len` bytes) as receive `slot` and records it there; on failure the
/// block goes back to the pool (the device never saw it).
pub(super) fn post_recv(
    qp: &dyn QueuePair,
    slots: &mut [Option<PoolBlock>],
    slot: usize,
    block: PoolBlock,
    len: usize,
) -> Result<(), EndpointError> {
    qp.post_recv(&RecvWr {
        wr_id: slot as u64,
        sg_list: vec![Sge {
            addr: block.ptr().as_ptr() as u64,
            length: len.min(block.capacity()) as u32,
            lkey: block.lkey(),
        }],
    })?;
    slots[slot] = Some(block);
    Ok(())
}

impl RdmaEndpoint {
    /// One receive completed: hands its bytes to `dst` (without copying at or above the
    /// threshold), re-posts a buffer, counts the credit; returns the bytes received.
    pub(super) fn on_recv(
        &self,
        st: &mut State,
        wc: &WorkCompletion,
        dst: &mut IOBuf,
    ) -> Result<usize, EndpointError> {
        let slot = wc.wr_id as usize;
        let block = st
            .recv_slots
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or_else(|| {
                EndpointError::Protocol(format!("receive completion for unposted wr_id {slot}"))
            })?;
        let len = wc.byte_len as usize;
        if len > self.cfg.recv_block_size {
            return Err(EndpointError::Protocol(format!(
                "received {len} bytes into a {}-byte buffer",
                self.cfg.recv_block_size
            )));
        }
        let repost = if len == 0 {
            block
        } else {
            st.stats.messages_received += 1;
            st.stats.bytes_received += len as u64;
            let fresh = (self.cfg.recv_zerocopy && len >= self.cfg.zerocopy_min_size)
                .then(|| PoolBlock::alloc(&self.recv_pool))
                .flatten();
            match fresh {
                Some(fresh) => {
                    block.into_iobuf(len, dst);
                    st.stats.zerocopy_blocks += 1;
                    fresh
                }
                None => {
                    // SAFETY: the receive completed, so the device wrote `len` bytes (checked
                    // against the buffer size above) and no longer touches the block, which is
                    // ours until re-posted below.
                    let bytes = unsafe { std::slice::from_raw_parts(block.ptr().as_ptr(), len) };
                    dst.append(bytes);
                    st.stats.copied_messages += 1;
                    block
                }
            }
        };
        post_recv(
            &*self.qp,
            &mut st.recv_slots,
            slot,
            repost,
            self.cfg.recv_block_size,
        )?;
        if let Some(credits) = st.window.on_recv(wc.byte_len, wc.imm_data)? {
            self.post_pure_ack(st, credits)?;
        }
        Ok(len)
    }

    /// Posts a pure ACK (zero-byte send with immediate) returning `credits`.
    pub(super) fn post_pure_ack(&self, st: &mut State, credits: u32) -> Result<(), EndpointError> {
        self.qp.post_send(&SendWr {
            wr_id: ACK_WR_ID,
            sg_list: Vec::new(),
            op: SendOp::SendWithImm(credits),
            signaled: true,
            solicited: true,
        })?;
        st.stats.pure_acks_sent += 1;
        Ok(())
    }
}
