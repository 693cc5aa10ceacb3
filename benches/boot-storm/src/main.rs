//! boot-storm: many phones booting at once (benches/boot_storm.sh).
//!
//! Reads a plan, one phone a line: its User-Agent, then each file of its
//! boot sequence in order as `KIND STATUS PATH` (KIND `common`, `phone` or
//! `quiet`; STATUS the answer the plan expects), tab-separated. Walks every
//! phone's files in order, `--concurrency` phones at a time, phone i from
//! source address number i % `--sources` (127.10.x.y: every 127/8 address is
//! this machine), with a new TCP connection (and TLS handshake, resuming the
//! phone's own earlier session as phones with session tickets do) per file
//! unless `--keep-alive`. Prints, per kind, how many, p50/p99/max latency
//! (connect to last body byte), answers that differ from the plan, and the
//! storm's total time and rate.
//!
//! usage: boot-storm ADDR PLAN [--https CA_PEM] [--sources N] [--concurrency N] [--keep-alive]

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const KINDS: [&str; 3] = ["common", "phone", "quiet"];

struct Fetch {
    kind: usize,
    status: u16,
    path: String,
}

struct Phone {
    user_agent: String,
    files: Vec<Fetch>,
}

struct Options {
    addr: SocketAddr,
    tls: Option<Arc<rustls::RootCertStore>>,
    sources: usize,
    concurrency: usize,
    keep_alive: bool,
}

/// What one worker saw: latencies (µs) per kind, mismatched answers (by
/// kind), errors (with a few examples).
#[derive(Default)]
struct Tally {
    micros: [Vec<u32>; 3],
    wrong: [u64; 3],
    errors: u64,
    examples: Vec<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: boot-storm ADDR PLAN [--https CA_PEM] [--sources N] [--concurrency N] [--keep-alive]";
    let positional: Vec<&String> = {
        let mut out = Vec::new();
        let mut i = 0;
        while i < args.len() {
            if args[i] == "--keep-alive" {
                i += 1;
            } else if args[i].starts_with("--") {
                i += 2;
            } else {
                out.push(&args[i]);
                i += 1;
            }
        }
        out
    };
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let [addr, plan] = positional.as_slice() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let tls = flag("--https").map(|ca| {
        let pem = std::fs::read(&ca).unwrap_or_else(|e| panic!("{ca}: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile_certs(&pem) {
            roots.add(cert).expect("a CA certificate");
        }
        Arc::new(roots)
    });
    let options = Arc::new(Options {
        addr: addr.parse().expect("ADDR as host:port"),
        tls,
        sources: flag("--sources").map_or(1000, |s| s.parse().expect("--sources N")),
        concurrency: flag("--concurrency").map_or(256, |s| s.parse().expect("--concurrency N")),
        keep_alive: args.iter().any(|a| a == "--keep-alive"),
    });
    let phones = Arc::new(read_plan(plan));
    let files: usize = phones.iter().map(|p| p.files.len()).sum();
    eprintln!(
        "boot-storm: {} phones, {files} files, {} sources, {} at once, {}{}",
        phones.len(),
        options.sources,
        options.concurrency,
        if options.tls.is_some() { "HTTPS" } else { "HTTP" },
        if options.keep_alive { ", keep-alive per phone" } else { ", a new connection per file" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (tally, elapsed) = runtime.block_on(storm(options, phones));
    report(&tally, files, elapsed);
    if tally.errors > 0 || tally.wrong.iter().any(|&w| w > 0) {
        std::process::exit(1);
    }
}

/// The certificates of a PEM file (only CERTIFICATE blocks).
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().expect("PEM certificates")
}

fn read_plan(path: &str) -> Vec<Phone> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut phones = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.expect("a readable plan");
        let mut cells = line.split('\t');
        let user_agent = cells.next().unwrap_or_default().to_string();
        let files = cells
            .map(|cell| {
                let mut parts = cell.splitn(3, ' ');
                let kind = parts.next().and_then(|k| KINDS.iter().position(|x| *x == k));
                let status = parts.next().and_then(|s| s.parse().ok());
                match (kind, status, parts.next()) {
                    (Some(kind), Some(status), Some(path)) => Fetch { kind, status, path: path.to_string() },
                    _ => panic!("{path} line {}: expected KIND STATUS PATH, got {cell:?}", n + 1),
                }
            })
            .collect();
        phones.push(Phone { user_agent, files });
    }
    phones
}

async fn storm(options: Arc<Options>, phones: Arc<Vec<Phone>>) -> (Tally, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (options, phones, next) = (options.clone(), phones.clone(), next.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(phone) = phones.get(i) else { break };
                    boot(&options, i, phone, &mut tally).await;
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for w in workers {
        let t = w.await.unwrap();
        for k in 0..3 {
            all.micros[k].extend_from_slice(&t.micros[k]);
            all.wrong[k] += t.wrong[k];
        }
        all.errors += t.errors;
        all.examples.extend(t.examples.into_iter().take(5usize.saturating_sub(all.examples.len())));
    }
    (all, started.elapsed())
}

/// Phone `i` walks its boot sequence.
async fn boot(options: &Options, i: usize, phone: &Phone, tally: &mut Tally) {
    let j = i % options.sources;
    let source = IpAddr::V4(Ipv4Addr::new(127, 10, (j / 250) as u8, (1 + j % 250) as u8));
    // The phone's own TLS client: its sessions are its own to resume.
    let tls = options.tls.as_ref().map(|roots| {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    });
    let mut kept: Option<Box<dyn Conn>> = None;
    for fetch in &phone.files {
        let started = Instant::now();
        let result = async {
            let mut conn = match kept.take() {
                Some(c) => c,
                None => connect(options, source, tls.as_ref()).await?,
            };
            let status = get(&mut *conn, &fetch.path, &phone.user_agent, options.keep_alive).await?;
            if options.keep_alive {
                kept = Some(conn);
            }
            Ok::<u16, std::io::Error>(status)
        }
        .await;
        match result {
            Ok(status) => {
                tally.micros[fetch.kind].push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if status != fetch.status {
                    tally.wrong[fetch.kind] += 1;
                    if tally.examples.len() < 5 {
                        tally.examples.push(format!("{} answered {status}, the plan says {}", fetch.path, fetch.status));
                    }
                }
            }
            Err(e) => {
                tally.errors += 1;
                kept = None;
                if tally.examples.len() < 5 {
                    tally.examples.push(format!("{}: {e}", fetch.path));
                }
            }
        }
    }
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

async fn connect(
    options: &Options,
    source: IpAddr,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> std::io::Result<Box<dyn Conn>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let tcp: TcpStream = socket.connect(options.addr).await?;
    tcp.set_nodelay(true)?;
    Ok(match tls {
        None => Box::new(tcp),
        Some(tls) => Box::new(tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await?),
    })
}

/// One GET: its status, with the whole body read (by Content-Length).
async fn get(conn: &mut dyn Conn, path: &str, user_agent: &str, keep_alive: bool) -> std::io::Result<u16> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {user_agent}\r\nConnection: {connection}\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut chunk)).await.map_err(|_| bad("timed out"))??;
        if n == 0 {
            return Err(bad("closed before the headers"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("headers not UTF-8"))?;
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status"))?;
    let length: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim()))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("no Content-Length"))?;
    let mut have = buf.len() - head_end;
    while have < length {
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut chunk)).await.map_err(|_| bad("timed out"))??;
        if n == 0 {
            return Err(bad("closed in the body"));
        }
        have += n;
    }
    Ok(status)
}

fn report(tally: &Tally, files: usize, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!("kind    requests      p50 ms    p99 ms    max ms   wrong answers");
    for (k, name) in KINDS.iter().enumerate() {
        let mut v = tally.micros[k].clone();
        if v.is_empty() {
            continue;
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
        println!("{name:<7} {:>8} {:>11.1} {:>9.1} {:>9.1} {:>15}", v.len(), at(0.50), at(0.99), at(1.0), tally.wrong[k]);
    }
    println!(
        "storm: {files} requests in {secs:.1} s = {:.0} req/s; {} errors, {} wrong answers",
        files as f64 / secs,
        tally.errors,
        tally.wrong.iter().sum::<u64>()
    );
    for e in &tally.examples {
        println!("  e.g. {e}");
    }
}
