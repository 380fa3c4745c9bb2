//! A paced sender and its sink for `cargo xtask bench` part 6 (a helper,
//! not a test): a fixed offered rate that costs almost no user time.
//!
//! ```text
//! pace udp-send ADDR:PORT PPS SECS     64-byte datagrams at PPS
//! pace udp-sink PORT SECS              receives until SECS pass
//! pace tcp-send ADDR:PORT MBITS SECS   64 KiB writes at MBITS
//! pace tcp-sink PORT                   one connection, read to EOF
//! ```
//!
//! iperf3's `-b` pacing spins in user space (17 us of CPU per 64-byte
//! datagram at 30 kpps here, most of it iperf3's own loop), which buries
//! the kernel path the bench is about. This sender wakes every
//! millisecond and sends what is due, so its time is the kernel's.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

// Dependencies of the package's other targets, which an example sees too.
use {
    anyhow as _, aya as _, clap as _, flannel_probe as _, flannel_probe_common as _,
    flannel_probe_tests as _, libc as _, percent_encoding as _, serde as _, serde_json as _,
    serde_norway as _, tempfile as _,
};

const TICK: Duration = Duration::from_millis(1);
const TCP_CHUNK: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&a) {
        Ok(n) => println!("{n}"),
        Err(e) => {
            eprintln!("pace: {e}");
            std::process::exit(1);
        }
    }
}

fn run(a: &[&str]) -> Result<u64, String> {
    match a {
        ["udp-send", to, pps, secs] => udp_send(to, num(pps)?, num(secs)?),
        ["udp-sink", port, secs] => udp_sink(port, num(secs)?),
        ["tcp-send", to, mbits, secs] => tcp_send(to, num(mbits)?, num(secs)?),
        ["tcp-sink", port] => tcp_sink(port),
        _ => Err("usage: pace udp-send|udp-sink|tcp-send|tcp-sink ... (see the source)".into()),
    }
}

fn num(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("{s:?} is not a number"))
}

/// Sends `due(elapsed) - sent` units every tick for `secs`; returns the
/// units sent.
fn paced(
    secs: u64,
    per_sec: u64,
    mut send: impl FnMut() -> Result<(), String>,
) -> Result<u64, String> {
    let start = Instant::now();
    let end = Duration::from_secs(secs);
    let mut sent = 0u64;
    loop {
        let t = start.elapsed();
        if t >= end {
            return Ok(sent);
        }
        let due = (t.as_secs_f64() * per_sec as f64) as u64;
        while sent < due {
            send()?;
            sent += 1;
        }
        std::thread::sleep(TICK);
    }
}

fn udp_send(to: &str, pps: u64, secs: u64) -> Result<u64, String> {
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    s.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
    let buf = [0x5au8; 64];
    // A full socket buffer (ENOBUFS) or a not yet resolved neighbour
    // (ECONNREFUSED from an earlier ICMP) is the path's loss, not ours.
    paced(secs, pps, || {
        let _ = s.send(&buf);
        Ok(())
    })
}

fn udp_sink(port: &str, secs: u64) -> Result<u64, String> {
    let s = UdpSocket::bind(format!("0.0.0.0:{port}")).map_err(|e| format!("bind: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 2048];
    let mut n = 0u64;
    while Instant::now() < deadline {
        if s.recv(&mut buf).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

fn tcp_send(to: &str, mbits: u64, secs: u64) -> Result<u64, String> {
    let mut s = TcpStream::connect(to).map_err(|e| format!("connect {to}: {e}"))?;
    let buf = vec![0x5au8; TCP_CHUNK];
    let chunks_per_sec = mbits * 1_000_000 / 8 / TCP_CHUNK as u64;
    paced(secs, chunks_per_sec.max(1), || {
        s.write_all(&buf).map_err(|e| format!("write: {e}"))
    })
}

fn tcp_sink(port: &str) -> Result<u64, String> {
    let l = TcpListener::bind(format!("0.0.0.0:{port}")).map_err(|e| format!("bind: {e}"))?;
    let (mut c, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
    let mut buf = vec![0u8; TCP_CHUNK];
    let mut n = 0u64;
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k as u64,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}
