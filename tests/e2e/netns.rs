//! The NAT test bed's network namespaces (`tests/nat/testbed.sh` makes
//! them) as the tests use them: a tokio runtime whose threads live in one
//! namespace, so that every socket its tasks open (listeners, UDP sockets,
//! outgoing connections) and every process they start is in that
//! namespace; and a forwarder that lets the cloud namespace reach the test
//! run's PostgreSQL on the host's loopback.

#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime};

/// The namespaces' names: the script's, with this test run's process id, so
/// that a run beside another (or beside someone's by-hand test bed) is not
/// disturbed.
pub fn cloud() -> String {
    format!("ap-cloud-{}", std::process::id())
}

pub fn office() -> String {
    format!("ap-office-{}", std::process::id())
}

fn router() -> String {
    format!("ap-router-{}", std::process::id())
}
/// autoprov's address in the cloud, and Kamailio's.
pub const AUTOPROV_IP: &str = "203.0.113.1";
pub const KAMAILIO_IP: &str = "203.0.113.2";
/// The office's one public address (the NAT router's outside).
pub const OFFICE_PUBLIC_IP: &str = "203.0.113.100";
/// The address every phone in the office shares.
pub const OFFICE_PHONES_IP: &str = "192.168.77.10";

/// One test at a time owns the namespaces (their names are fixed).
static BED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The namespaces, made on `up` and removed on drop.
pub struct Testbed {
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/nat/testbed.sh")
}

fn run_script(verb: &str) -> Result<(), String> {
    let out = std::process::Command::new(script())
        .arg(verb)
        .env("CLOUD_NS", cloud())
        .env("ROUTER_NS", router())
        .env("OFFICE_NS", office())
        .output()
        .map_err(|e| format!("testbed.sh {verb}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("testbed.sh {verb}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

impl Testbed {
    pub async fn up() -> Testbed {
        let turn = BED.lock().await;
        run_script("up").unwrap_or_else(|e| panic!("{e}"));
        Testbed { _turn: turn }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Err(e) = run_script("down") {
            eprintln!("{e}");
        }
    }
}

/// Moves the calling thread into namespace `ns`.
fn enter(ns: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns on a descriptor we own; it changes only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A multi-threaded runtime living in namespace `ns`: its threads are
/// started by a thread that entered `ns`, and threads inherit their
/// parent's namespace. Shut it down with `shutdown_background` (dropping a
/// runtime inside another is refused).
pub fn runtime_in(ns: String) -> Runtime {
    std::thread::spawn(move || {
        enter(&ns).unwrap_or_else(|e| panic!("entering {ns}: {e}"));
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(ns).enable_all().build().expect("a runtime")
    })
    .join()
    .expect("the namespace thread")
}

/// Forwards `127.0.0.1:port` of the namespace the calling task runs in to
/// `127.0.0.1:port` of the host, whose connections `host` (a runtime in the
/// host's namespace) opens: the cloud reaches the test PostgreSQL this way.
pub async fn forward_host_port(port: u16, host: Handle) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("a forwarder in the namespace");
    tokio::spawn(async move {
        while let Ok((mut inside, _)) = listener.accept().await {
            let connect = host.spawn(TcpStream::connect(("127.0.0.1", port)));
            tokio::spawn(async move {
                if let Ok(Ok(mut outside)) = connect.await {
                    let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
                }
            });
        }
    });
}
