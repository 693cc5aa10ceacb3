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

fn ack(block: u16) -> [u8; 4] {
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
    let mut out = Outcome::default();
    let mut buf = vec![0u8; 70_000];
    let mut expected: u16 = 1;
    let mut burst = 0usize;
    let mut peer: Option<SocketAddr> = None;
    loop {
        let (len, from) = match tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf)).await {
            Ok(r) => r.unwrap(),
            Err(_) => return Err(TftpError::Silent),
        };
        if *peer.get_or_insert(from) != from {
            continue; // not our transfer's TID
        }
        let p = &buf[..len];
        let opcode = u16::from_be_bytes([p[0], p[1]]);
        match opcode {
            5 => {
                let code = u16::from_be_bytes([p[2], p[3]]);
                let msg = String::from_utf8_lossy(&p[4..len - 1]).into_owned();
                return Err(TftpError::Error(code, msg));
            }
            6 => {
                let fields: Vec<String> = p[2..].split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
                out.oack =
                    fields.chunks(2).filter(|c| c.len() == 2 && !c[0].is_empty()).map(|c| (c[0].clone(), c[1].clone())).collect();
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
