//! A load generator for `POST /api/events` (bench/ingest.py builds it with plain `rustc -O`,
//! no crates): C keep-alive HTTP/1.1 connections on C threads, each posting its share of N
//! events with unique ids one after another, timing every request.
//!
//! Usage: ingest_client HOST:PORT API_KEY EVENTS CONNECTIONS [ID_PREFIX]
//! Prints one line: `events=N seconds=S p50_ms=.. p99_ms=.. max_ms=.. non_202=K`.
//! A Python client would spend more CPU than the server it measures on two cores.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: ingest_client HOST:PORT API_KEY EVENTS CONNECTIONS [ID_PREFIX]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let key = args[2].clone();
    let n: usize = args[3].parse().expect("EVENTS is a number");
    let c: usize = args[4].parse().expect("CONNECTIONS is a number");
    let prefix = args.get(5).cloned().unwrap_or_else(|| "ev".into());
    let start = Instant::now();
    let threads: Vec<_> = (0..c)
        .map(|t| {
            let (addr, key, prefix) = (addr.clone(), key.clone(), prefix.clone());
            std::thread::spawn(move || run(&addr, &key, &prefix, t, c, n))
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    let mut bad = 0;
    for t in threads {
        let (l, b) = t.join().expect("a client thread panicked");
        latencies.extend(l);
        bad += b;
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "events={} seconds={seconds:.3} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} non_202={bad}",
        latencies.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}

/// Posts events t, t + c, t + 2c, … below n on one connection.
fn run(addr: &str, key: &str, prefix: &str, t: usize, c: usize, n: usize) -> (Vec<Duration>, usize) {
    let mut stream = TcpStream::connect(addr).expect("cannot connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut reader = BufReader::new(stream.try_clone().expect("clone the socket"));
    let mut latencies = Vec::with_capacity(n / c + 1);
    let mut bad = 0;
    let mut line = String::new();
    for i in (t..n).step_by(c) {
        let body = format!(
            r#"{{"email":"http{i}@example.com","name":"lead.captured","id":"{prefix}-{i}","properties":{{"source":"ebook","title":"The Guide"}},"attributes":{{"first_name":"Lead{i}","company":"Company {}"}}}}"#,
            i % 97
        );
        let request = format!(
            "POST /api/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        stream.write_all(request.as_bytes()).expect("write");
        line.clear();
        reader.read_line(&mut line).expect("read the status line");
        if !line.starts_with("HTTP/1.1 202") {
            bad += 1;
        }
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line).expect("read a header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("read the body");
        latencies.push(sent.elapsed());
    }
    (latencies, bad)
}
