//! The TFTP front end, packet by packet: options, windows, netascii, write
//! requests, unknown files and garbage.

use std::time::Duration;

use serde_json::json;
use tokio::net::UdpSocket;

use crate::harness::{Backend, TestServer};
use crate::provisioning::{create_phones, http_get, phone, phones, real_tftp_get, same_but_server};
use crate::tftp_client::{get, get_raw, rrq, TftpError};

/// A server with one phone, and that phone's file as a TFTP client names
/// it: `p/<token>/<file>`.
async fn server_with_phone() -> (TestServer, String) {
    let srv = TestServer::start(Backend::Sqlite).await;
    // A file of several blocks (Yealink's is long).
    let p = phone("yealink");
    srv.create_handset(json!({"extensionnumber": "100", "name": "Reception", "mac": p.mac, "model": p.model})).await;
    let file = srv.phone_path(&p.file).await[1..].to_string();
    (srv, file)
}

async fn options_are_negotiated() {
    let (srv, file) = server_with_phone().await;
    let tftp = srv.running().tftp_addr.unwrap();
    let plain = get(tftp, &file).await.unwrap();
    assert!(plain.len() > 600, "a file of several 512-byte blocks");

    let req = rrq(&file, "octet", &[("blksize", "1428"), ("tsize", "0"), ("timeout", "2"), ("windowsize", "4")]);
    let out = get_raw(tftp, [127, 0, 0, 1].into(), &req, 1428, 4).await.unwrap();
    let oack: Vec<(&str, &str)> = out.oack.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let size = plain.len().to_string();
    assert_eq!(oack, [("blksize", "1428"), ("timeout", "2"), ("tsize", size.as_str()), ("windowsize", "4")]);
    assert_eq!(out.data, plain);

    // Small blocks and a window of 4: the server sends four blocks per ACK.
    let req = rrq(&file, "octet", &[("blksize", "16"), ("windowsize", "4")]);
    let out = get_raw(tftp, [127, 0, 0, 1].into(), &req, 16, 4).await.unwrap();
    assert_eq!(out.data, plain);
    assert!(out.bursts.iter().rev().skip(1).all(|&n| n == 4), "{:?}", out.bursts);

    // Out-of-range values are clamped or ignored, never an error.
    let req = rrq(&file, "octet", &[("blksize", "4"), ("timeout", "0"), ("windowsize", "0"), ("colour", "red")]);
    let out = get_raw(tftp, [127, 0, 0, 1].into(), &req, 512, 1).await.unwrap();
    assert!(out.oack.is_empty(), "{:?}", out.oack);
    assert_eq!(out.data, plain);
    srv.stop().await;
}

async fn netascii_is_converted() {
    let (srv, file) = server_with_phone().await;
    let tftp = srv.running().tftp_addr.unwrap();
    let octet = get(tftp, &file).await.unwrap();
    let out = get_raw(tftp, [127, 0, 0, 1].into(), &rrq(&file, "netascii", &[]), 512, 1).await.unwrap();
    let lines = octet.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(out.data.len(), octet.len() + lines);
    assert_eq!(String::from_utf8(out.data).unwrap().replace("\r\n", "\n").into_bytes(), octet);
    srv.stop().await;
}

async fn refusals_and_garbage() {
    let (srv, file) = server_with_phone().await;
    let tftp = srv.running().tftp_addr.unwrap();
    let local = [127, 0, 0, 1].into();
    // A write request is refused with an error packet.
    let mut wrq = rrq("001565aabb01.cfg", "octet", &[]);
    wrq[1] = 2;
    assert!(matches!(get_raw(tftp, local, &wrq, 512, 1).await, Err(TftpError::Error(2, _))));
    // Unknown and hostile names: error 1.
    for name in ["001565ffffff.cfg", "nosuchfile", "../../etc/passwd", "/etc/passwd", &"a".repeat(1000)] {
        assert!(matches!(get_raw(tftp, local, &rrq(name, "octet", &[]), 512, 1).await, Err(TftpError::Error(1, _))), "{name}");
    }
    // Garbage, truncated requests, a 4 KiB name, stray ACKs: no answer, no crash.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let long = rrq(&"b".repeat(4096), "octet", &[]);
    for junk in [
        &b""[..],
        b"\x00",
        b"\x00\x01abc",
        b"\x00\x01abc\x00oct",
        b"\x00\x04\x00\x01",
        b"\xff\xff\xff\xff",
        &long,
        b"\x00\x01a\x00mail\x00",
    ] {
        socket.send_to(junk, tftp).await.unwrap();
    }
    let mut buf = [0u8; 600];
    let answer = tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await;
    assert!(answer.is_err(), "garbage got an answer");
    // The server still serves.
    assert!(get(tftp, &file).await.is_ok());
    srv.stop().await;
}

async fn a_real_client_gets_the_same_file_as_http() {
    let client = crate::peers::tftp_client().expect("tftp-hpa (the test needs it)");
    let srv = TestServer::start(Backend::Sqlite).await;
    create_phones(&srv).await;
    let tftp = srv.running().tftp_addr.unwrap();
    let http_base = format!("http://127.0.0.1:{}/", srv.http().port());
    for (p, file) in phones().iter().flat_map(|p| p.files.iter().map(move |f| (p, f))) {
        let path = srv.phone_path(file).await;
        let got = String::from_utf8(real_tftp_get(&client, tftp.port(), &path)).unwrap();
        assert_eq!(got.as_bytes(), crate::tftp_client::get(tftp, &path[1..]).await.unwrap(), "{} {file}", p.family);
        let (_, _, body) = http_get(&srv, file, Some(&p.ua)).await;
        let tftp_base = format!("tftp://127.0.0.1:{}/", tftp.port());
        assert_eq!(same_but_server(&got, &tftp_base), same_but_server(&body, &http_base), "{} {file}", p.family);
    }
    srv.stop().await;
}

crate::e2e!(
    options_are_negotiated,
    netascii_is_converted,
    refusals_and_garbage,
    a_real_client_gets_the_same_file_as_http needs [TftpClient],
);
