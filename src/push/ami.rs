//! Relay through Asterisk: the manager interface (AMI) sends the NOTIFY
//! from the PBX the phone is registered with (`PJSIPNotify` to the endpoint
//! named after the extension). One connection per AMI server, logged in
//! once and reused; a lost connection is re-opened on the next push.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::model::Secret;

const TIMEOUT: Duration = Duration::from_secs(10);

type Conn = BufReader<TcpStream>;

/// Open AMI connections, by (host, port, user).
#[derive(Default)]
pub struct AmiRelays {
    conns: Mutex<HashMap<(String, u16, String), Conn>>,
    next_action: std::sync::atomic::AtomicU64,
}

impl AmiRelays {
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
    ) -> Result<(), String> {
        let key = (host.to_string(), port, user.to_string());
        let mut conns = self.conns.lock().await;
        let action_id = self.next_action.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let action = format!(
            "Action: PJSIPNotify\r\nActionID: autoprov-{action_id}\r\nEndpoint: {endpoint}\r\nVariable: Event={event}\r\n\r\n"
        );
        for attempt in 0..2 {
            if !conns.contains_key(&key) {
                let conn = login(host, port, user, secret).await?;
                conns.insert(key.clone(), conn);
            }
            let conn = conns.get_mut(&key).ok_or("AMI connection vanished")?;
            match tokio::time::timeout(TIMEOUT, exchange(conn, &action, &format!("autoprov-{action_id}"))).await {
                Ok(Ok(Ok(()))) => return Ok(()),
                // Asterisk answered: an error about this push, not the link.
                Ok(Ok(Err(message))) => return Err(format!("AMI PJSIPNotify: {message}")),
                Ok(Err(e)) if attempt == 0 => {
                    tracing::info!(error = %e, "AMI connection lost; reconnecting");
                    conns.remove(&key);
                }
                Ok(Err(e)) => return Err(format!("AMI {host}:{port}: {e}")),
                Err(_) => {
                    conns.remove(&key);
                    return Err(format!("AMI {host}:{port}: no answer"));
                }
            }
        }
        Err(format!("AMI {host}:{port}: connection lost"))
    }
}

async fn login(host: &str, port: u16, user: &str, secret: &Secret) -> Result<Conn, String> {
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("AMI {host}:{port}: connect timed out"))?
        .map_err(|e| format!("AMI {host}:{port}: {e}"))?;
    let mut conn = BufReader::new(stream);
    let mut banner = String::new();
    tokio::time::timeout(TIMEOUT, conn.read_line(&mut banner))
        .await
        .map_err(|_| "AMI: no banner".to_string())?
        .map_err(|e| e.to_string())?;
    if !banner.starts_with("Asterisk Call Manager") {
        return Err(format!("AMI {host}:{port}: not an Asterisk manager ({:?})", banner.trim()));
    }
    let action = format!("Action: Login\r\nActionID: autoprov-login\r\nUsername: {user}\r\nSecret: {}\r\n\r\n", secret.expose());
    match tokio::time::timeout(TIMEOUT, exchange(&mut conn, &action, "autoprov-login")).await {
        Ok(Ok(Ok(()))) => Ok(conn),
        Ok(Ok(Err(message))) => Err(format!("AMI login as {user}: {message}")),
        Ok(Err(e)) => Err(format!("AMI {host}:{port}: {e}")),
        Err(_) => Err(format!("AMI {host}:{port}: login timed out")),
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
