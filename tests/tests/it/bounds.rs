//! Bounded by design: the agent's HTTP server survives a client holding
//! thousands of idle connections or dribbling a header; `?fresh=1` bursts
//! share samples and are rate-limited; link events of pod veths do not
//! each cost a sample.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use flannel_probe_tests::{
    lab::{Lab, LabNode, LabSpec, churn::Churn},
    support::{http_get_in, in_netns, scaled, start_agent, terminate},
};

/// The server's header-read (and idle) timeout (`HttpLimits::default`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Its connection cap.
const MAX_CONNECTIONS: usize = 256;

fn agent_addr(node: &LabNode) -> SocketAddr {
    SocketAddr::from((node.ip, 9465))
}

fn get(node: &LabNode, path: &str) -> (u16, String) {
    http_get_in(
        &node.ns,
        &agent_addr(node).to_string(),
        path,
        scaled(Duration::from_secs(10)),
    )
    .expect("GET from the agent")
}

/// Raises this process's open-file limit to at least `n` (soft, and the
/// hard one as root allows).
fn raise_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < n {
            lim.rlim_cur = n;
            lim.rlim_max = lim.rlim_max.max(n);
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim),
                0,
                "setrlimit NOFILE {n}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Open file descriptors of `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .expect("read the agent's fds")
}

/// Sends `head` (possibly incomplete) on a fresh connection from `node`'s
/// namespace and reads until the server closes; (what it said, how long
/// it kept the connection).
fn hold(node: &LabNode, head: &str, limit: Duration) -> (String, Duration) {
    let addr = agent_addr(node);
    in_netns(&node.ns, || {
        let mut s = TcpStream::connect_timeout(&addr, limit).expect("connect");
        s.set_read_timeout(Some(limit)).expect("read timeout");
        let t0 = Instant::now();
        s.write_all(head.as_bytes()).expect("send");
        let mut raw = Vec::new();
        // EOF or a reset both mean closed; a timeout fails below.
        let res = s.read_to_end(&mut raw);
        let took = t0.elapsed();
        if let Err(e) = &res {
            assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "still open after {took:?} ({head:?})"
            );
        }
        (String::from_utf8_lossy(&raw).into_owned(), took)
    })
    .expect("enter the node's namespace")
}

#[test]
fn idle_connections_and_slow_headers_do_not_starve_healthz() {
    let Some(lab) = Lab::for_test(LabSpec::with_nodes(2)) else {
        return;
    };
    let node = lab.nodes[0].clone();
    let agent = start_agent(&lab, &node, &["--interval", "1s"]);
    let pid = agent.pid();
    let idle = 2000;
    raise_nofile(idle as u64 + 1024);

    // One client opens 2 000 connections and sends nothing on them.
    let addr = agent_addr(&node);
    let held = in_netns(&node.ns, || {
        (0..idle)
            .map(|i| {
                TcpStream::connect_timeout(&addr, scaled(Duration::from_secs(10)))
                    .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
            })
            .collect::<Vec<_>>()
    })
    .expect("enter the node's namespace");
    assert_eq!(held.len(), idle);

    let t0 = Instant::now();
    let (code, body) = get(&node, "/healthz");
    let took = t0.elapsed();
    eprintln!("/healthz beside {idle} idle connections: {took:?}");
    assert_eq!((code, body.trim()), (200, "ok"));
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    // The cap holds: the agent keeps no more sockets than it allows (plus
    // its own netlink, BPF and log descriptors).
    let open = fds(pid);
    assert!(
        open <= MAX_CONNECTIONS + 64,
        "{open} fds open in the agent with a cap of {MAX_CONNECTIONS}"
    );
    drop(held);

    // Half a header: closed after the header timeout, not before.
    let limit = HEADER_TIMEOUT + scaled(Duration::from_secs(5));
    let (said, took) = hold(&node, "GET /healthz HTTP/1.1\r\nHost: a\r\n", limit);
    eprintln!("half a header: closed after {took:?} ({said:?})");
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(500) && took < limit,
        "closed after {took:?}"
    );
    assert!(!said.contains("200 OK"), "{said}");
    // A kept-alive connection that asks nothing more: the same timer.
    let (said, took) = hold(
        &node,
        "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        limit + HEADER_TIMEOUT,
    );
    eprintln!("idle keep-alive: closed after {took:?}");
    assert!(said.starts_with("HTTP/1.1 200 OK"), "{said}");
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(500) && took < limit,
        "closed after {took:?}"
    );

    // Request limits: URI, headers, body.
    let long = format!("/healthz?{}", "a".repeat(2000));
    let (code, _) = get(&node, &long);
    assert_eq!(code, 414, "a 2000-byte URI");
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (said, _) = hold(
        &node,
        &format!("GET /healthz HTTP/1.1\r\nHost: a\r\n{many}\r\n"),
        limit,
    );
    assert!(said.starts_with("HTTP/1.1 431"), "40 headers: {said:?}");
    let (said, _) = hold(
        &node,
        "GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        limit,
    );
    assert!(said.starts_with("HTTP/1.1 413"), "a body: {said:?}");
    let (code, body) = get(&node, "/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));

    terminate(pid);
    let (code, _) = agent
        .finish(scaled(Duration::from_secs(20)))
        .expect("agent exits");
    assert_eq!(code, 0, "serve exits cleanly beside the held sockets");
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// `GET /counters[?fresh=1]`: (samples taken so far, when this one was read).
fn counters(node: &LabNode, fresh: bool) -> (u64, f64) {
    let (code, body) = get(
        node,
        if fresh {
            "/counters?fresh=1"
        } else {
            "/counters"
        },
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("counters JSON");
    (
        v["samples"].as_u64().expect("samples"),
        v["sampled_unix"].as_f64().expect("sampled_unix"),
    )
}

#[test]
fn fifty_concurrent_fresh_requests_share_samples_and_are_rate_limited() {
    let Some(lab) = Lab::for_test(LabSpec::with_nodes(2)) else {
        return;
    };
    let node = lab.nodes[0].clone();
    let interval = Duration::from_secs(1);
    let agent = start_agent(&lab, &node, &["--interval", "1s"]);

    let t0 = Instant::now();
    let (before, _) = counters(&node, true);
    let answers: Vec<(f64, u64, f64)> = thread::scope(|s| {
        let workers: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    let asked = unix_now();
                    let (samples, at) = counters(&node, true);
                    (asked, samples, at)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a fresh request"))
            .collect()
    });
    let (after, _) = counters(&node, false);
    let elapsed = t0.elapsed();
    assert_eq!(answers.len(), 50);
    for (asked, samples, at) in &answers {
        assert!(
            at >= asked,
            "a reading of {at} answered a request of {asked}"
        );
        assert!(*samples > before);
    }
    let intervals = (elapsed.as_secs_f64() / interval.as_secs_f64()).floor() as u64;
    let grew = after - before;
    eprintln!("50 fresh requests in {elapsed:?}: {grew} samples ({intervals} intervals)");
    // The scheduled ones (one per interval, plus the phase of the first),
    // and extra ones no closer than the pacer's spacing, each shared by
    // every request waiting when it starts: far fewer than 50.
    // The agent's `fleet::fresh::MIN_SPACING`: 100 ms.
    let spaced = (elapsed.as_secs_f64() / 0.1).ceil() as u64;
    assert!(
        grew <= intervals + 1 + spaced + 1,
        "{grew} samples in {elapsed:?} at a {interval:?} interval"
    );
    assert!(grew < 25, "50 requests shared {grew} samples");
    let (code, text) = get(&node, "/metrics");
    assert_eq!(code, 200);
    let metric = text
        .lines()
        .find_map(|l| l.strip_prefix("flannel_probe_samples_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("flannel_probe_samples_total in /metrics");
    assert!(metric >= after, "{metric} < {after}");

    terminate(agent.pid());
    let (code, _) = agent
        .finish(scaled(Duration::from_secs(20)))
        .expect("agent exits");
    assert_eq!(code, 0, "serve exits cleanly");
}

#[test]
fn pod_veth_churn_costs_no_extra_samples() {
    let Some(lab) = Lab::for_test(LabSpec::with_nodes(2)) else {
        return;
    };
    let node = lab.nodes[0].clone();
    let interval = Duration::from_secs(1);
    let agent = start_agent(&lab, &node, &["--interval", "1s"]);

    let t0 = Instant::now();
    let (before, _) = counters(&node, false);
    let churned = Churn::start(&node.ns, 100, scaled(Duration::from_secs(5)))
        .finish()
        .expect("veth churn");
    let (after, _) = counters(&node, false);
    let elapsed = t0.elapsed();
    let intervals = (elapsed.as_secs_f64() / interval.as_secs_f64()).floor() as u64;
    let grew = after - before;
    eprintln!(
        "{} veth pairs in {:.1} s ({:.0}/s): {grew} samples in {elapsed:?}",
        churned.pairs,
        churned.secs,
        churned.pairs_per_sec()
    );
    assert!(churned.pairs >= 200, "{churned:?}");
    // One per interval; the first reading read may be up to an interval old.
    assert!(
        grew <= intervals + 2,
        "{grew} samples in {elapsed:?} at a {interval:?} interval under churn"
    );
    let (code, body) = get(&node, "/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));

    terminate(agent.pid());
    let (code, _) = agent
        .finish(scaled(Duration::from_secs(20)))
        .expect("agent exits");
    assert_eq!(code, 0, "serve exits cleanly");
}
