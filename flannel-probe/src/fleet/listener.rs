//! The agent's HTTP accept loop, bounded so that no client can starve it:
//! a header-read timeout (which, in hyper, also runs while a kept-alive
//! connection waits for its next request: the idle timeout), a cap on open
//! connections that evicts the longest-idle one to admit a newcomer (so a
//! client holding idle sockets cannot keep `/healthz` out), and limits on
//! request line, headers and body. The router only ever sees requests that
//! passed them.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::{Request, Response, StatusCode, header},
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::watch, task::AbortHandle};

/// The bounds of the HTTP server (the README names them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpLimits {
    /// A request's head must arrive whole within this; it also closes a
    /// kept-alive connection that sends no next request (idle timeout).
    pub header_timeout: Duration,
    /// Open connections at most; a newcomer evicts the longest-idle one.
    pub max_connections: usize,
    /// Request line and headers together (hyper's read buffer).
    pub max_head_bytes: usize,
    /// Header lines at most.
    pub max_headers: usize,
    /// Path and query at most.
    pub max_uri_bytes: usize,
    /// Request body at most: the agent's endpoints are all GETs.
    pub max_body_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            max_connections: 256,
            // hyper's smallest read buffer; far above any scrape's head.
            max_head_bytes: 8192,
            max_headers: 32,
            max_uri_bytes: 1024,
            max_body_bytes: 0,
        }
    }
}

/// One open connection: busy while a handler runs for it.
struct Entry {
    busy: u32,
    /// Accepted, or its last answer sent: the eviction order.
    idle_since: Instant,
    abort: Option<AbortHandle>,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: HashMap<u64, Entry>,
}

#[derive(Clone, Default)]
struct Conns(Arc<Mutex<Table>>);

impl Conns {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere while holding it leaves only counters behind.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new connection; `None` when the table is full of busy
    /// ones (the newcomer is closed). Otherwise the longest-idle one is
    /// evicted to stay within `cap`.
    fn admit(&self, cap: usize) -> Option<u64> {
        let mut t = self.lock();
        if t.open.len() >= cap {
            let oldest = t
                .open
                .iter()
                .filter(|(_, e)| e.busy == 0)
                .min_by_key(|(_, e)| e.idle_since)
                .map(|(id, _)| *id)?;
            if let Some(e) = t.open.remove(&oldest)
                && let Some(a) = e.abort
            {
                a.abort();
            }
        }
        let id = t.next;
        t.next += 1;
        t.open.insert(
            id,
            Entry {
                busy: 0,
                idle_since: Instant::now(),
                abort: None,
            },
        );
        Some(id)
    }

    fn set_abort(&self, id: u64, abort: AbortHandle) {
        match self.lock().open.get_mut(&id) {
            Some(e) => e.abort = Some(abort),
            // Evicted (or done) before its task was registered.
            None => abort.abort(),
        }
    }

    fn begin(&self, id: u64) {
        if let Some(e) = self.lock().open.get_mut(&id) {
            e.busy += 1;
        }
    }

    fn end(&self, id: u64) {
        if let Some(e) = self.lock().open.get_mut(&id) {
            e.busy = e.busy.saturating_sub(1);
            e.idle_since = Instant::now();
        }
    }

    fn remove(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    fn len(&self) -> usize {
        self.lock().open.len()
    }

    fn abort_all(&self) {
        for (_, e) in self.lock().open.drain() {
            if let Some(a) = e.abort {
                a.abort();
            }
        }
    }
}

/// Removes its connection from the table however its task ends (done,
/// failed, evicted or aborted).
struct Registered(Conns, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// Marks a request in flight (not evictable) until dropped.
struct InFlight(Conns, u64);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}

fn refuse(status: StatusCode, why: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{why}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// The request limits hyper does not enforce itself: URI length and body.
fn check(req: &Request<Incoming>, limits: &HttpLimits) -> Option<Response<Body>> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > limits.max_uri_bytes {
        return Some(refuse(
            StatusCode::URI_TOO_LONG,
            &format!("URI longer than {} bytes", limits.max_uri_bytes),
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if chunked || declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Some(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request bodies over {} bytes", limits.max_body_bytes),
        ));
    }
    None
}

/// Serves `router` on `listener` until `stop` turns true, then gives the
/// requests in flight up to 5 s and closes every connection.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Conns::default();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes)
        .max_headers(limits.max_headers);
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: the cap keeps us below the fd limit,
                // so this is someone else's exhaustion; back off briefly.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(id) = conns.admit(limits.max_connections) else {
            tracing::debug!("every connection is busy: closing a newcomer");
            continue;
        };
        let registered = Registered(conns.clone(), id);
        let svc_conns = conns.clone();
        let svc_router = TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            svc_conns.begin(id);
            let guard = InFlight(svc_conns.clone(), id);
            let refused = check(&req, &limits);
            let call = refused
                .is_none()
                .then(|| hyper::service::Service::call(&svc_router, req));
            async move {
                let _guard = guard;
                match (refused, call) {
                    (Some(r), _) => Ok(r),
                    (None, Some(call)) => call.await,
                    (None, None) => Ok(refuse(StatusCode::INTERNAL_SERVER_ERROR, "no route")),
                }
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let mut conn_stop = stop.clone();
        let task = tokio::spawn(async move {
            let _registered = registered;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = conn_stop.wait_for(|s| *s) => {}
            }
            // Closes at once when idle, after the answer otherwise.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
        conns.set_abort(id, task.abort_handle());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while conns.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if conns.len() > 0 {
        tracing::warn!("{} connections did not close in 5s", conns.len());
    }
    conns.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_longest_idle_and_never_a_busy_one() {
        let c = Conns::default();
        let a = c.admit(2).expect("room");
        let b = c.admit(2).expect("room");
        c.begin(a);
        // a is busy, b idle: the newcomer takes b's place.
        let n = c.admit(2).expect("b evicted");
        assert_eq!(c.len(), 2);
        assert!(c.lock().open.contains_key(&a));
        assert!(!c.lock().open.contains_key(&b));
        c.begin(n);
        assert_eq!(c.admit(2), None, "all busy: the newcomer is closed");
        c.end(a);
        assert!(c.admit(2).is_some(), "a is idle again");
        assert!(!c.lock().open.contains_key(&a));
    }
}
