//! The clsact qdisc, when we had to add it: removed again on exit, but only
//! when no filter (ours or anyone's) is left on it. A qdisc we found is
//! never removed.
use anyhow::{Context as _, Result, anyhow};
use futures::TryStreamExt as _;
use netlink_packet_route::tc::{TcAttribute, TcHandle};

/// Number of filters on the clsact qdisc of `ifindex` (ingress + egress).
async fn filters(handle: &rtnetlink::Handle, ifindex: i32) -> Result<usize> {
    let mut n = 0;
    for egress in [false, true] {
        let req = handle.traffic_filter(ifindex).get();
        let req = if egress { req.egress() } else { req.ingress() };
        let list: Vec<_> = req
            .execute()
            .try_collect()
            .await
            .context("listing tc filters failed")?;
        n += list.len();
    }
    Ok(n)
}

async fn remove(ifindex: i32) -> Result<bool> {
    let (conn, handle, _) =
        rtnetlink::new_connection().context("opening a netlink socket failed")?;
    tokio::spawn(conn);
    if filters(&handle, ifindex).await? > 0 {
        return Ok(false);
    }
    let mut req = handle.qdisc().del(ifindex);
    let msg = req.message_mut();
    msg.header.parent = TcHandle::CLSACT;
    msg.header.handle = TcHandle {
        major: 0xffff,
        minor: 0,
    };
    msg.attributes.push(TcAttribute::Kind("clsact".into()));
    req.execute()
        .await
        .context("deleting the clsact qdisc failed")?;
    Ok(true)
}

/// Removes the clsact qdisc of `ifindex` if no filter is left on it; true
/// when it was removed. Runs on a thread of its own (same network
/// namespace) so it works from drop paths inside or outside a runtime.
pub(super) fn remove_if_empty(ifindex: u32) -> Result<bool> {
    let idx = i32::try_from(ifindex).map_err(|_| anyhow!("ifindex {ifindex} out of range"))?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a runtime for clsact cleanup failed")?;
        rt.block_on(remove(idx))
    })
    .join()
    .map_err(|_| anyhow!("the clsact cleanup thread panicked"))?
}
