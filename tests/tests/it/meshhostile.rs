//! `mesh` against agents that misbehave: fake agents (tiny HTTP servers in
//! this process, on loopback) that answer with more than `--max-response`
//! (declared, and streamed without a length) and one whose hostname and
//! findings carry ANSI escapes. Needs no privileges.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use flannel_probe::{
    agent::{AgentFinding, AgentNode, Counters},
    report::Severity,
};
use flannel_probe_tests::support::{probe_bin, scaled};

/// What a fake agent answers to every request.
#[derive(Clone)]
enum Answer {
    /// A counters document, padded with blanks to `pad_to` bytes (JSON
    /// allows them), with its Content-Length.
    Counters { doc: String, pad_to: usize },
    /// 200 OK and an endless stream without a length (until `limit`).
    Flood { limit: u64 },
}

/// A fake agent on 127.0.0.1; counts the body bytes it managed to write.
struct FakeAgent {
    addr: String,
    written: Arc<AtomicU64>,
}

fn read_request(s: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 << 10 {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
}

fn serve_one(mut s: TcpStream, answer: &Answer, written: &AtomicU64) {
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    read_request(&mut s);
    match answer {
        Answer::Counters { doc, pad_to } => {
            let mut body = doc.clone().into_bytes();
            body.resize(body.len().max(*pad_to), b' ');
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if s.write_all(head.as_bytes()).is_ok() && s.write_all(&body).is_ok() {
                written.fetch_add(body.len() as u64, Ordering::Relaxed);
            }
        }
        Answer::Flood { limit } => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            if s.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![b'['; 64 << 10];
            let mut sent = 0u64;
            while sent < *limit {
                match s.write(&chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sent += n as u64,
                }
            }
            written.fetch_add(sent, Ordering::Relaxed);
        }
    }
}

impl FakeAgent {
    fn start(answer: Answer) -> FakeAgent {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = l.local_addr().expect("local address").to_string();
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        // Lives until the test process ends; each connection on its own
        // thread, as mesh asks every agent at once.
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (answer, w) = (answer.clone(), w.clone());
                std::thread::spawn(move || serve_one(s, &answer, &w));
            }
        });
        FakeAgent { addr, written }
    }
}

fn counters(hostname: &str, vtep: &str, summary: &str) -> String {
    let c = Counters {
        schema: 1,
        started_unix: 1000.0,
        sampled_unix: 1001.0,
        node: AgentNode {
            hostname: hostname.into(),
            overlay: "flannel.1".into(),
            overlay_state: "up".into(),
            local_vtep: Some(vtep.into()),
            vxlan_port: 8472,
            port_bound: true,
            ..Default::default()
        },
        findings: vec![AgentFinding {
            code: "VXLAN_NOT_DECAPSULATED".into(),
            severity: Severity::Critical,
            peer: None,
            summary: summary.into(),
            evidence: vec![format!("evidence {summary}")],
            remediation: format!("fix {summary}"),
        }],
        ..Default::default()
    };
    serde_json::to_string(&c).expect("encode counters")
}

fn mesh(agents: &[&FakeAgent], extra: &[&str]) -> (i32, String, String) {
    let list: Vec<&str> = agents.iter().map(|a| a.addr.as_str()).collect();
    let out = Command::new(probe_bin())
        .args(["mesh", "--duration", "1s", "--timeout"])
        .arg(format!("{}s", scaled(Duration::from_secs(10)).as_secs()))
        .arg("--agents")
        .arg(list.join(","))
        .args(extra)
        .output()
        .expect("run mesh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn answers_over_the_cap_make_the_agent_unreachable_with_the_reason() {
    const FLOOD: u64 = 256 << 20;
    let good = FakeAgent::start(Answer::Counters {
        doc: counters("gladius", "192.0.2.11", "ok"),
        pad_to: 0,
    });
    // 2 MiB, declared: refused on its Content-Length.
    let declared = FakeAgent::start(Answer::Counters {
        doc: counters("momonoke", "192.0.2.12", "ok"),
        pad_to: 2 << 20,
    });
    // 256 MiB without a length: read up to the cap, then dropped.
    let flood = FakeAgent::start(Answer::Flood { limit: FLOOD });
    let (code, stdout, stderr) = mesh(&[&good, &declared, &flood], &[]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let reason = "larger than --max-response 1048576 bytes";
    for a in [&declared, &flood] {
        let line = format!("agent http://{} (unknown node): unreachable", a.addr);
        assert!(stdout.contains(&line), "{line} not in\n{stdout}");
        assert!(
            stdout.contains(&format!(
                "http://{}/counters?fresh=1: the answer is {reason}",
                a.addr
            )),
            "no reason for {} in\n{stdout}",
            a.addr
        );
    }
    assert_eq!(stdout.matches("AGENT_UNREACHABLE").count(), 2, "{stdout}");
    let flooded = flood.written.load(Ordering::Relaxed);
    assert!(
        flooded < FLOOD,
        "mesh read the whole flood ({flooded} bytes) instead of stopping at the cap"
    );
    // A larger cap takes the genuine 2 MiB answer.
    let (_, stdout, _) = mesh(&[&good, &declared], &["--max-response", "4MiB"]);
    assert!(!stdout.contains("AGENT_UNREACHABLE"), "{stdout}");
}

#[test]
fn ansi_escapes_from_an_agent_are_shown_escaped() {
    let host = "evil\x1b[31mred\x1b[0m";
    let summary = "\x1b[2Jwiped\r\nHEALTHY all fine\x07";
    let evil = FakeAgent::start(Answer::Counters {
        doc: counters(host, "192.0.2.66", summary),
        pad_to: 0,
    });
    let (code, stdout, stderr) = mesh(&[&evil], &[]);
    assert_eq!(
        code, 1,
        "the critical finding is repeated: {stdout}\n{stderr}"
    );
    assert!(
        !stdout.chars().any(|c| c != '\n' && c.is_control()),
        "a control character reached the terminal: {stdout:?}"
    );
    for want in [
        r"evil\x1b[31mred\x1b[0m: \x1b[2Jwiped\r\nHEALTHY all fine\x07",
        r"evidence \x1b[2Jwiped\r\nHEALTHY all fine\x07",
        r"fix \x1b[2Jwiped\r\nHEALTHY all fine\x07",
    ] {
        assert!(stdout.contains(want), "{want} not in\n{stdout}");
    }
    assert!(
        !stdout.lines().any(|l| l.starts_with("HEALTHY")),
        "{stdout}"
    );
    // JSON keeps the strings as they are, encoded.
    let (_, json, _) = mesh(&[&evil], &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("mesh JSON");
    assert_eq!(v["nodes"][0]["hostname"], host);
    assert!(!json.contains('\x1b'));
}
