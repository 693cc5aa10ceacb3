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
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry((host.to_string(), port, user.to_string())).or_default().clone()
        };
        let mut conn = slot.lock().await;
        let server = format!("{host}:{port}");
        let action_id = self.next_action.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let action = format!(
            "Action: PJSIPNotify\r\nActionID: autoprov-{action_id}\r\nEndpoint: {endpoint}\r\nVariable: Event={event}\r\n\r\n"
        );
        for attempt in 0..2 {
            if conn.is_none() {
                let addrs = self.targets.resolve(host, port).await?;
                *conn = Some(login(&addrs, host, port, user, secret).await?);
            }
            let Some(c) = conn.as_mut() else { continue };
            match tokio::time::timeout(TIMEOUT, exchange(c, &action, &format!("autoprov-{action_id}"))).await {
                Ok(Ok(Ok(()))) => return Ok(()),
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
