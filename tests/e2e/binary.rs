//! The `autoprov` binary as a test runs it: its own process (signals,
//! resource limits, its log on stderr), on loopback ephemeral ports.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `autoprov` with a clean environment: `data` as its data directory, HTTP,
/// HTTPS and the monitoring listener on loopback ephemeral ports, TFTP and
/// SIP off, and relays and phones allowed on loopback (where the tests'
/// peers live).
pub fn autoprov(data: &std::path::Path) -> Command {
    with_environment(Command::new(env!("CARGO_BIN_EXE_autoprov")), data)
}

/// The same, under an open-file limit of `nofile` (soft and hard: it cannot
/// raise it).
pub fn autoprov_with_nofile(data: &std::path::Path, nofile: u32) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", "ulimit -n \"$1\" && shift && exec \"$@\"", "sh", &nofile.to_string(), env!("CARGO_BIN_EXE_autoprov")]);
    with_environment(c, data)
}

fn with_environment(mut c: Command, data: &std::path::Path) -> Command {
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTOPROV_DATA_DIR", data)
        .env("AUTOPROV_HTTP_LISTEN", "127.0.0.1:0")
        .env("AUTOPROV_HTTPS_LISTEN", "127.0.0.1:0")
        .env("AUTOPROV_TFTP_LISTEN", "off")
        .env("AUTOPROV_SIP_LISTEN", "off")
        .env("AUTOPROV_METRICS_LISTEN", "127.0.0.1:0")
        .env("AUTOPROV_ALLOW_INTERNAL_TARGETS", "true");
    c
}

/// Runs a command to its end: success, stdout, stderr.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> (bool, String, String) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

pub fn sigterm(child: &Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success();
    assert!(ok);
}

/// A running `autoprov serve`.
pub struct Served {
    pub child: Child,
    /// What it printed on stdout up to its TLS certificate line.
    pub lines: Vec<String>,
    log: Arc<Mutex<String>>,
}

/// Starts `cmd serve` and waits until it says where it listens.
pub fn serve(cmd: &mut Command) -> Served {
    let mut child = cmd.arg("serve").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (mut err, sink) = (BufReader::new(child.stderr.take().unwrap()), log.clone());
    std::thread::spawn(move || {
        let mut line = String::new();
        while err.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(line.trim_end().to_string());
        if line.starts_with("TLS certificate") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Served { child, lines, log }
}

impl Served {
    /// The address printed after `prefix` (`"HTTPS listening on "`).
    pub fn addr(&self, prefix: &str) -> SocketAddr {
        let line = self.lines.iter().find_map(|l| l.strip_prefix(prefix));
        line.unwrap_or_else(|| panic!("no {prefix:?} line in {:?}", self.lines)).trim().parse().unwrap()
    }

    /// Its log (stderr) so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `within` for it to exit.
    pub fn exited_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
