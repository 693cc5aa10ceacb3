//! A minimal TFTP client for tests: read requests with options, over a real
//! UDP socket, so option negotiation and windows can be checked packet by
//! packet.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

#[derive(Debug, PartialEq, Eq)]
pub enum TftpError {
    /// An ERROR packet: code and message.
    Error(u16, String),
    /// No answer within the timeout.
    Silent,
    Protocol(String),
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub data: Vec<u8>,
    /// The options the server acknowledged (OACK), if any.
    pub oack: Vec<(String, String)>,
    /// DATA packets received before each ACK we sent (window sizes seen).
    pub bursts: Vec<usize>,
}

pub fn rrq(file: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 1];
    p.extend_from_slice(file.as_bytes());
    p.push(0);
    p.extend_from_slice(mode.as_bytes());
    p.push(0);
    for (k, v) in options {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

pub fn ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, 4, b[0], b[1]]
}

/// Sends `request` from `local` and runs the transfer to its end.
pub async fn get_raw(
    server: SocketAddr,
    local: IpAddr,
    request: &[u8],
    blksize: usize,
    window: usize,
) -> Result<Outcome, TftpError> {
    let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await.unwrap();
    socket.send_to(request, server).await.unwrap();
    finish(&socket, None, blksize, window).await
}

/// As [`get_raw`], but the first answer "is lost": the client ignores it
/// and sends its request again, as an RFC 1350 client does on its timeout.
/// The same answer must come again, from the same TID, within `within`.
pub async fn get_losing_first(
    server: SocketAddr,
    local: IpAddr,
    request: &[u8],
    blksize: usize,
    window: usize,
    within: Duration,
) -> Result<Outcome, TftpError> {
    let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await.unwrap();
    socket.send_to(request, server).await.unwrap();
    let first = recv(&socket, Duration::from_secs(3)).await?;
    socket.send_to(request, server).await.unwrap();
    let again = recv(&socket, within).await?;
    if again != first {
        return Err(TftpError::Protocol(format!("the answer to the repeated request differs: {again:?}, first {first:?}")));
    }
    finish(&socket, Some(again), blksize, window).await
}

/// One datagram and where it came from, or `Silent` after `within`.
pub async fn recv(socket: &UdpSocket, within: Duration) -> Result<(Vec<u8>, SocketAddr), TftpError> {
    let mut buf = vec![0u8; 70_000];
    match tokio::time::timeout(within, socket.recv_from(&mut buf)).await {
        Ok(r) => {
            let (len, from) = r.unwrap();
            Ok((buf[..len].to_vec(), from))
        }
        Err(_) => Err(TftpError::Silent),
    }
}

/// Every datagram `socket` receives from now until `within` has passed.
pub async fn collect(socket: &UdpSocket, within: Duration) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(r) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
        got.push(buf[..r.unwrap().0].to_vec());
    }
    got
}

/// A datagram's opcode (1 RRQ … 6 OACK).
pub fn opcode(datagram: &[u8]) -> u16 {
    u16::from_be_bytes([datagram[0], datagram[1]])
}

/// An OACK's options.
pub fn oack_options(datagram: &[u8]) -> Vec<(String, String)> {
    let fields: Vec<String> = datagram[2..].split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    fields.chunks(2).filter(|c| c.len() == 2 && !c[0].is_empty()).map(|c| (c[0].clone(), c[1].clone())).collect()
}

/// Runs a transfer whose request has been sent, starting with `pending`
/// (an answer already received), if any.
async fn finish(
    socket: &UdpSocket,
    mut pending: Option<(Vec<u8>, SocketAddr)>,
    blksize: usize,
    window: usize,
) -> Result<Outcome, TftpError> {
    let mut out = Outcome::default();
    let mut expected: u16 = 1;
    let mut burst = 0usize;
    let mut peer: Option<SocketAddr> = None;
    loop {
        let (p, from) = match pending.take() {
            Some(p) => p,
            None => recv(socket, Duration::from_secs(3)).await?,
        };
        if *peer.get_or_insert(from) != from {
            continue; // not our transfer's TID
        }
        let len = p.len();
        match opcode(&p) {
            5 => {
                let code = u16::from_be_bytes([p[2], p[3]]);
                let msg = String::from_utf8_lossy(&p[4..len - 1]).into_owned();
                return Err(TftpError::Error(code, msg));
            }
            6 => {
                out.oack = oack_options(&p);
                socket.send_to(&ack(0), from).await.unwrap();
            }
            3 => {
                let block = u16::from_be_bytes([p[2], p[3]]);
                if block != expected {
                    return Err(TftpError::Protocol(format!("block {block}, expected {expected}")));
                }
                let payload = &p[4..];
                out.data.extend_from_slice(payload);
                burst += 1;
                let last = payload.len() < blksize;
                if last || burst == window {
                    out.bursts.push(burst);
                    burst = 0;
                    socket.send_to(&ack(block), from).await.unwrap();
                }
                if last {
                    return Ok(out);
                }
                expected = expected.wrapping_add(1);
            }
            other => return Err(TftpError::Protocol(format!("unexpected opcode {other}"))),
        }
    }
}

/// An octet read with no options, from 127.0.0.1.
pub async fn get(server: SocketAddr, file: &str) -> Result<Vec<u8>, TftpError> {
    get_raw(server, [127, 0, 0, 1].into(), &rrq(file, "octet", &[]), 512, 1).await.map(|o| o.data)
}
