//! TFTP under hostile requesters: forged sources that never acknowledge
//! (no amplification, a capped timeout), one source asking for too much,
//! and floods that fill every transfer slot.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use autoprov::config::{HumanDuration, Settings};
use serde_json::json;
use tokio::net::UdpSocket;

use crate::harness::{eventually, Backend, TestServer};
use crate::provisioning::phone;
use crate::tftp_client::{ack, collect, get, get_losing_first, get_raw, oack_options, opcode, recv, rrq, TftpError};

const DATA: u16 = 3;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// A server with one phone, and that phone's file as a TFTP client names
/// it: `p/<token>/<file>`.
async fn server(adjust: impl FnOnce(&mut Settings)) -> (TestServer, SocketAddr, String) {
    let srv = TestServer::start_with(Backend::Sqlite, adjust).await;
    let p = phone("yealink");
    srv.create_handset(json!({"extensionnumber": "100", "name": "Reception", "mac": p.mac, "model": p.model})).await;
    let file = srv.phone_path(&p.file).await[1..].to_string();
    let tftp = srv.running().tftp_addr.unwrap();
    (srv, tftp, file)
}

fn loopback(last: u8) -> IpAddr {
    [127, 0, 0, last].into()
}

/// A socket on `ip` that has sent `request` to the server.
async fn requester(ip: IpAddr, tftp: SocketAddr, request: &[u8]) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap();
    socket.send_to(request, tftp).await.unwrap();
    socket
}

/// What each socket receives from now until `within` has passed.
async fn collect_all(sockets: &[UdpSocket], within: Duration) -> Vec<Vec<Vec<u8>>> {
    futures::future::join_all(sockets.iter().map(|s| collect(s, within))).await
}

async fn an_unacknowledging_requester_gets_one_datagram() {
    let timeout = Duration::from_millis(200);
    let (srv, tftp, file) = server(|s| s.tuning.tftp_timeout = timeout).await;
    let size = get(tftp, &file).await.unwrap().len().to_string();
    // No options; a timeout of 255 s alone (refused, so DATA 1 answers);
    // and with tsize (an OACK without the timeout).
    let cases: [(&[(&str, &str)], u16); 3] =
        [(&[], DATA), (&[("timeout", "255")], DATA), (&[("timeout", "255"), ("tsize", "0")], OACK)];
    let mut sockets = Vec::new();
    for (options, _) in &cases {
        sockets.push(requester(loopback(1), tftp, &rrq(&file, "octet", options)).await);
    }
    // The old server resent its answer after each timeout, five times.
    let got = collect_all(&sockets, Duration::from_secs(1) + timeout * 3).await;
    for ((options, expected), got) in cases.iter().zip(&got) {
        assert_eq!(got.len(), 1, "{options:?}: {} datagrams", got.len());
        assert_eq!(opcode(&got[0]), *expected, "{options:?}");
    }
    assert_eq!(oack_options(&got[2][0]), [("tsize".to_string(), size)]);
    srv.stop().await;
}

async fn the_negotiated_timeout_is_capped() {
    let (srv, tftp, file) = server(|s| s.tftp_max_timeout = HumanDuration(Duration::from_secs(2))).await;
    let plain = get(tftp, &file).await.unwrap();
    let size = plain.len().to_string();
    let local = loopback(1);
    let oack = |o: &[(String, String)]| o.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    // At the cap: the client's own value (RFC 2349: that, or nothing).
    let out = get_raw(tftp, local, &rrq(&file, "octet", &[("timeout", "2"), ("tsize", "0")]), 512, 1).await.unwrap();
    assert_eq!(oack(&out.oack), format!("timeout=2,tsize={size}"));
    assert_eq!(out.data, plain);
    // Above it: not acknowledged, the rest is.
    for t in ["3", "255"] {
        let out = get_raw(tftp, local, &rrq(&file, "octet", &[("timeout", t), ("tsize", "0")]), 512, 1).await.unwrap();
        assert_eq!(oack(&out.oack), format!("tsize={size}"), "timeout {t}");
        assert_eq!(out.data, plain);
    }
    srv.stop().await;
}

async fn a_lost_first_answer_comes_again_for_the_repeated_request() {
    // A long timeout: an answer that comes within two seconds of the
    // repeated request is the answer to it, not a retransmission.
    let (srv, tftp, file) = server(|s| s.tuning.tftp_timeout = Duration::from_secs(5)).await;
    let plain = get(tftp, &file).await.unwrap();
    let within = Duration::from_secs(2);
    // DATA 1 lost.
    let out = get_losing_first(tftp, loopback(1), &rrq(&file, "octet", &[]), 512, 1, within).await.unwrap();
    assert_eq!(out.data, plain);
    // The OACK lost.
    let request = rrq(&file, "octet", &[("blksize", "1024"), ("tsize", "0")]);
    let out = get_losing_first(tftp, loopback(1), &request, 1024, 1, within).await.unwrap();
    assert_eq!(out.oack, [("blksize".to_string(), "1024".to_string()), ("tsize".to_string(), plain.len().to_string())]);
    assert_eq!(out.data, plain);
    // Unknown files too: the error is the first answer, and a repeat gets it
    // again (a new transfer), once.
    let socket = requester(loopback(1), tftp, &rrq("p/nosuchtoken/001565ffffff.cfg", "octet", &[])).await;
    let (first, _) = recv(&socket, within).await.unwrap();
    assert_eq!(opcode(&first), ERROR);
    socket.send_to(&rrq("p/nosuchtoken/001565ffffff.cfg", "octet", &[]), tftp).await.unwrap();
    assert_eq!(collect(&socket, Duration::from_millis(500)).await, [first]);
    srv.stop().await;
}

async fn one_source_holds_at_most_its_share() {
    let timeout = Duration::from_millis(300);
    let (srv, tftp, file) = server(|s| {
        s.tftp_transfers_per_source = 4;
        s.tuning.tftp_timeout = timeout;
    })
    .await;
    let plain = get(tftp, &file).await.unwrap();
    // Five requests from one address (five ports), none acknowledged.
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(requester(loopback(2), tftp, &rrq(&file, "octet", &[])).await);
    }
    // Meanwhile another address is served.
    let out = get_raw(tftp, loopback(3), &rrq(&file, "octet", &[]), 512, 1).await.unwrap();
    assert_eq!(out.data, plain);
    let got = collect_all(&sockets, timeout * 4).await;
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    // Four transfers sent one datagram each; the fifth request got nothing
    // (no "busy" either: see `Admission::SourceFull`).
    assert_eq!(counts, [1, 1, 1, 1, 0]);
    assert!(got.iter().flatten().all(|d| opcode(d) == DATA));
    // The four end after timeout × 6 without an ACK, and free the address's
    // share: it is served again.
    let out = eventually("the source's unacknowledged transfers ended", Duration::from_secs(15), || async {
        get_raw(tftp, loopback(2), &rrq(&file, "octet", &[]), 512, 1).await.ok()
    })
    .await;
    assert_eq!(out.data, plain);
    srv.stop().await;
}

async fn a_flood_of_unacknowledged_requests_leaves_room_for_a_phone() {
    // Unacknowledged transfers would hold their slots for 6 s.
    let timeout = Duration::from_secs(1);
    let (srv, tftp, file) = server(|s| {
        s.tftp_max_transfers = 32;
        s.tuning.tftp_timeout = timeout;
    })
    .await;
    let plain = get(tftp, &file).await.unwrap();
    // Twice as many forged requests as slots, from 64 addresses.
    let mut flood = Vec::new();
    for i in 0..64 {
        flood.push(requester(loopback(10 + i), tftp, &rrq(&file, "octet", &[("tsize", "0")])).await);
    }
    let watch = collect_all(&flood, timeout * 3);
    // The listener takes requests in order: when the phone's comes, the
    // flood's have taken every slot, and none has acknowledged.
    let request = rrq(&file, "octet", &[("blksize", "1024")]);
    let phone = get_raw(tftp, loopback(200), &request, 1024, 1);
    let (got, phone) = tokio::join!(watch, phone);
    assert_eq!(phone.unwrap().data, plain, "the phone is served");
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    // One datagram per request at most; an evicted transfer may have sent
    // its OACK already, or nothing.
    assert!(counts.iter().all(|&n| n <= 1), "{counts:?}");
    // The slots were full: the last 32 requests were answered (bar the one
    // that made room for the phone, maybe).
    assert!(counts.iter().sum::<usize>() >= 31, "{counts:?}");
    srv.stop().await;
}

async fn full_of_acknowledging_clients_is_busy() {
    let (srv, tftp, file) = server(|s| {
        s.tftp_max_transfers = 2;
        s.tuning.tftp_timeout = Duration::from_secs(1);
    })
    .await;
    // Two clients acknowledge the OACK and then stall: proven, under way.
    let mut stalled = Vec::new();
    for last in [2, 3] {
        let socket = requester(loopback(last), tftp, &rrq(&file, "octet", &[("tsize", "0")])).await;
        let (oack, from) = recv(&socket, Duration::from_secs(3)).await.unwrap();
        assert_eq!(opcode(&oack), OACK);
        socket.send_to(&ack(0), from).await.unwrap();
        let (data, _) = recv(&socket, Duration::from_secs(3)).await.unwrap();
        assert_eq!(opcode(&data), DATA);
        stalled.push(socket);
    }
    // Neither is ended for a newcomer, who is told the server is busy.
    let refused = get_raw(tftp, loopback(4), &rrq(&file, "octet", &[]), 512, 1).await;
    assert!(matches!(&refused, Err(TftpError::Error(0, m)) if m.contains("busy")), "{refused:?}");
    // A proven transfer has its retransmissions.
    let (again, _) = recv(&stalled[0], Duration::from_secs(3)).await.unwrap();
    assert_eq!(opcode(&again), DATA);
    srv.stop().await;
}

async fn a_lost_block_comes_again_after_the_timeout_and_the_file_ends_whole() {
    let timeout = Duration::from_millis(300);
    let (srv, tftp, file) = server(|s| s.tuning.tftp_timeout = timeout).await;
    let whole = get(tftp, &file).await.unwrap();
    assert!(whole.len() > 1024, "at least three blocks: {}", whole.len());
    let socket = requester(loopback(5), tftp, &rrq(&file, "octet", &[])).await;
    let (first, from) = recv(&socket, Duration::from_secs(3)).await.unwrap();
    assert_eq!((opcode(&first), &first[2..4]), (DATA, &[0, 1][..]));
    socket.send_to(&ack(1), from).await.unwrap();
    // Block 2 "is lost": not acknowledged. RFC 1350: the sender resends
    // it after its timeout, and nothing else meanwhile.
    let (second, _) = recv(&socket, Duration::from_secs(3)).await.unwrap();
    let sent = std::time::Instant::now();
    let (again, _) = recv(&socket, Duration::from_secs(3)).await.unwrap();
    assert_eq!(again, second, "block 2 again");
    assert!(sent.elapsed() >= timeout / 2, "resent after {:?}, before the timeout", sent.elapsed());
    let mut data = first[4..].to_vec();
    let mut block = again;
    loop {
        data.extend_from_slice(&block[4..]);
        socket.send_to(&[0, 4, block[2], block[3]], from).await.unwrap();
        if block.len() < 4 + 512 {
            break;
        }
        block = recv(&socket, Duration::from_secs(3)).await.unwrap().0;
        assert_eq!(opcode(&block), DATA);
    }
    assert_eq!(data, whole);
    srv.stop().await;
}

crate::e2e!(
    a_lost_block_comes_again_after_the_timeout_and_the_file_ends_whole,
    an_unacknowledging_requester_gets_one_datagram,
    the_negotiated_timeout_is_capped,
    a_lost_first_answer_comes_again_for_the_repeated_request,
    one_source_holds_at_most_its_share,
    a_flood_of_unacknowledged_requests_leaves_room_for_a_phone,
    full_of_acknowledging_clients_is_busy,
);
