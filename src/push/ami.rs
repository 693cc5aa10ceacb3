//! Relay through Asterisk: the manager interface (AMI) sends the NOTIFY
//! from the PBX the phone is registered with (`PJSIPNotify` to the endpoint
//! named after the extension). One connection per AMI server, logged in
//! once and reused; a lost connection is re-opened on the next push.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::target::{TargetError, TargetPolicy};
use crate::model::Secret;

const TIMEOUT: Duration = Duration::from_secs(10);

type Conn = BufReader<TcpStream>;

/// Why Asterisk did not send a NOTIFY.
#[derive(Debug, thiserror::Error)]
pub enum AmiError {
    #[error("AMI {server}: connect timed out")]
    ConnectTimeout { server: String },
    #[error("AMI {server}: {error}")]
    Io { server: String, error: std::io::Error },
    #[error("AMI {server}: not an Asterisk manager ({banner:?})")]
    NotAsterisk { server: String, banner: String },
    #[error("AMI login as {user}: {message}")]
    Login { user: String, message: String },
    #[error("AMI {server}: no answer")]
    NoAnswer { server: String },
    /// Asterisk answered: an error about this push, not the link.
    #[error("AMI PJSIPNotify: {0}")]
    Refused(String),
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// One AMI server's kept connection. Each has its own lock, so a server
/// that hangs holds up only its own domains' pushes.
type Slot = std::sync::Arc<Mutex<Option<Conn>>>;

/// Open AMI connections, by (host, port, user).
pub struct AmiRelays {
    slots: std::sync::Mutex<HashMap<(String, u16, String), Slot>>,
    next_action: std::sync::atomic::AtomicU64,
    targets: std::sync::Arc<TargetPolicy>,
}

impl AmiRelays {
    pub fn new(targets: std::sync::Arc<TargetPolicy>) -> Self {
        AmiRelays { slots: Default::default(), next_action: Default::default(), targets }
    }

    /// Asks Asterisk to NOTIFY `endpoint` with `event`. Retries once on a
    /// fresh connection if the kept one turns out to be dead.
    pub async fn notify(
        &self,
        host: &str,
        port: u16,
        user: &str,
        secret: &Secret,
        endpoint: &str,
        event: &str,
    ) -> Result<(), AmiError> {
        let variable = format!("Event={event}");
        let fields = [("Action", "PJSIPNotify"), ("Endpoint", endpoint), ("Variable", variable.as_str())];
        self.action(&AmiServer { host, port, user, secret }, &fields, None).await.map(|_| ())
    }

    /// Sends one action (`fields`, `Action` first; the ActionID is ours)
    /// on the server's kept connection and waits for its response. For a
    /// list action (`list_complete`: the event that ends the list, as
    /// `CoreShowChannelsComplete`) the events carrying its ActionID come
    /// back. Retries once on a fresh connection if the kept one turns out
    /// to be dead.
    pub async fn action(
        &self,
        server: &AmiServer<'_>,
        fields: &[(&str, &str)],
        list_complete: Option<&str>,
    ) -> Result<Vec<Block>, AmiError> {
        let AmiServer { host, port, user, secret } = *server;
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry((host.to_string(), port, user.to_string())).or_default().clone()
        };
        let mut conn = slot.lock().await;
        let server = format!("{host}:{port}");
        let action_id = format!("autoprov-{}", self.next_action.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut action = String::new();
        for (k, v) in fields {
            action.push_str(&format!("{k}: {v}\r\n"));
            if *k == "Action" {
                action.push_str(&format!("ActionID: {action_id}\r\n"));
            }
        }
        action.push_str("\r\n");
        for attempt in 0..2 {
            if conn.is_none() {
                let addrs = self.targets.resolve(host, port).await?;
                *conn = Some(login(&addrs, host, port, user, secret).await?);
            }
            let Some(c) = conn.as_mut() else { continue };
            match tokio::time::timeout(TIMEOUT, exchange_list(c, &action, &action_id, list_complete)).await {
                Ok(Ok(Ok(events))) => return Ok(events),
                Ok(Ok(Err(message))) => return Err(AmiError::Refused(message)),
                Ok(Err(e)) if attempt == 0 => {
                    tracing::info!(error = %e, "AMI connection lost; reconnecting");
                    *conn = None;
                }
                Ok(Err(error)) => {
                    *conn = None;
                    return Err(AmiError::Io { server, error });
                }
                Err(_) => {
                    *conn = None;
                    return Err(AmiError::NoAnswer { server });
                }
            }
        }
        Err(AmiError::NoAnswer { server })
    }
}

/// An AMI server and the login to use there.
#[derive(Clone, Copy)]
pub struct AmiServer<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub secret: &'a Secret,
}

/// One AMI message: its `Key: value` lines in order.
pub type Block = Vec<(String, String)>;

/// The value of `name` in `block` (names are case-insensitive).
pub fn field<'a>(block: &'a Block, name: &str) -> Option<&'a str> {
    block.iter().find_map(|(k, v)| k.eq_ignore_ascii_case(name).then_some(v.as_str()))
}

/// Connects to one of `addrs` (`host`'s addresses the target policy
/// allows) and logs in.
async fn login(addrs: &[std::net::SocketAddr], host: &str, port: u16, user: &str, secret: &Secret) -> Result<Conn, AmiError> {
    let server = format!("{host}:{port}");
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addrs))
        .await
        .map_err(|_| AmiError::ConnectTimeout { server: server.clone() })?
        .map_err(|error| AmiError::Io { server: server.clone(), error })?;
    let mut conn = BufReader::new(stream);
    let mut banner = String::new();
    tokio::time::timeout(TIMEOUT, conn.read_line(&mut banner))
        .await
        .map_err(|_| AmiError::NoAnswer { server: server.clone() })?
        .map_err(|error| AmiError::Io { server: server.clone(), error })?;
    if !banner.starts_with("Asterisk Call Manager") {
        return Err(AmiError::NotAsterisk { server, banner: banner.trim().to_string() });
    }
    let action = format!("Action: Login\r\nActionID: autoprov-login\r\nUsername: {user}\r\nSecret: {}\r\n\r\n", secret.expose());
    match tokio::time::timeout(TIMEOUT, exchange(&mut conn, &action, "autoprov-login")).await {
        Ok(Ok(Ok(()))) => Ok(conn),
        Ok(Ok(Err(message))) => Err(AmiError::Login { user: user.to_string(), message }),
        Ok(Err(error)) => Err(AmiError::Io { server, error }),
        Err(_) => Err(AmiError::NoAnswer { server }),
    }
}

/// Sends an action and reads blocks until the response with its ActionID:
/// `Ok(Ok(()))` on `Response: Success`, `Ok(Err(message))` on an error
/// response, `Err` when the connection fails. Event blocks are skipped.
async fn exchange(conn: &mut Conn, action: &str, action_id: &str) -> std::io::Result<Result<(), String>> {
    conn.get_mut().write_all(action.as_bytes()).await?;
    loop {
        let block = read_block(conn).await?;
        let get = |name: &str| block.iter().find_map(|(k, v)| k.eq_ignore_ascii_case(name).then_some(v.as_str()));
        if get("ActionID") != Some(action_id) || get("Response").is_none() {
            continue;
        }
        return Ok(match get("Response") {
            Some(r) if r.eq_ignore_ascii_case("success") => Ok(()),
            _ => Err(get("Message").unwrap_or("error").to_string()),
        });
    }
}

/// As [`exchange`], then for a list action the events with its ActionID
/// up to the one named `list_complete`.
async fn exchange_list(
    conn: &mut Conn,
    action: &str,
    action_id: &str,
    list_complete: Option<&str>,
) -> std::io::Result<Result<Vec<Block>, String>> {
    if let Err(message) = exchange(conn, action, action_id).await? {
        return Ok(Err(message));
    }
    let Some(complete) = list_complete else { return Ok(Ok(Vec::new())) };
    let mut events = Vec::new();
    loop {
        let block = read_block(conn).await?;
        if field(&block, "ActionID") != Some(action_id) {
            continue;
        }
        if field(&block, "Event").is_some_and(|e| e.eq_ignore_ascii_case(complete)) {
            return Ok(Ok(events));
        }
        if events.len() >= 10_000 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "oversized AMI event list"));
        }
        events.push(block);
    }
}

async fn read_block(conn: &mut Conn) -> std::io::Result<Vec<(String, String)>> {
    let mut block = Vec::new();
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            if block.is_empty() {
                continue;
            }
            return Ok(block);
        }
        if block.len() > 200 || line.len() > 8192 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "oversized AMI message"));
        }
        if let Some((k, v)) = line.split_once(':') {
            block.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}
