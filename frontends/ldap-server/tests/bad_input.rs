//! Input no well-behaved client sends: each ends its request or its connection with a
//! result code, and the server goes on answering everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ldap3_proto::LdapCodec;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapDerefAliases, LdapFilter, LdapMsg, LdapOp, LdapResultCode,
    LdapSearchRequest, LdapSearchScope,
};
use serde_json::json;
use tokio_util::codec::Framed;

use crate::support::{BASE, Directory, PASSWORD, user_dn, user_spec};

/// The server still answers a search.
fn still_serving(directory: &Directory) {
    let run = directory.search(&["-b", BASE, "(uid=bob)", "1.1"]).ok();
    assert_eq!(run.dns(), vec![user_dn("bob")]);
}

/// Everything the server sends on `stream` until it closes it (or 10 s pass).
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return received,
            Err(error) => panic!("the server kept the connection open: {error}"),
        }
    }
}

/// Decodes the one message in `bytes`: a notice of disconnection's result code.
fn notice_code(bytes: &[u8]) -> LdapResultCode {
    use tokio_util::codec::Decoder;
    let mut buffer = bytes::BytesMut::from(bytes);
    let message = LdapCodec::default()
        .decode(&mut buffer)
        .unwrap()
        .expect("a whole message");
    assert_eq!(message.msgid, 0);
    match message.op {
        LdapOp::ExtendedResponse(response) => {
            assert_eq!(response.name.as_deref(), Some("1.3.6.1.4.1.1466.20036"));
            response.res.code
        }
        other => panic!("not a notice of disconnection: {other:?}"),
    }
}

fn nested(depth: usize) -> String {
    format!("{}(uid=bob){}", "(&".repeat(depth), ")".repeat(depth))
}

#[test]
fn filters_over_the_limits_are_refused_with_admin_limit_exceeded() {
    let directory = Directory::start(|_| {});
    let deep = directory.search(&["-b", BASE, &nested(40), "1.1"]);
    assert_eq!(deep.code, 11, "{deep:?}");
    let within = directory.search(&["-b", BASE, &nested(20), "1.1"]).ok();
    assert_eq!(within.dns(), vec![user_dn("bob")]);
    let wide = format!(
        "(|{})",
        (0..2000).map(|i| format!("(uid=u{i})")).collect::<String>()
    );
    let run = directory.search(&["-b", BASE, &wide, "1.1"]);
    assert_eq!(run.code, 11, "{run:?}");
    // Deeper than the BER decoder goes: the connection ends, the server does not.
    let run = directory.search(&["-b", BASE, &nested(300), "1.1"]);
    assert_ne!(run.code, 0, "{run:?}");
    still_serving(&directory);
}

#[test]
fn malformed_oversized_and_unfinished_messages_end_their_connection() {
    let directory = Directory::start(|settings| {
        settings.max_message_bytes = 64 * 1024;
        settings.idle_timeout = Duration::from_secs(1);
    });
    let address = format!("127.0.0.1:{}", directory.port);
    // Well-formed BER that is no LDAP message: a sequence holding only a message id.
    let mut garbage = TcpStream::connect(&address).unwrap();
    garbage.write_all(&[0x30, 0x03, 0x02, 0x01, 0x01]).unwrap();
    let answer = read_to_close(&mut garbage);
    assert_eq!(notice_code(&answer), LdapResultCode::ProtocolError);
    // A message that says it is 2 GiB long, and a megabyte of it.
    let mut huge = TcpStream::connect(&address).unwrap();
    huge.write_all(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff])
        .unwrap();
    let chunk = vec![0x04u8; 64 * 1024];
    for _ in 0..16 {
        if huge.write_all(&chunk).is_err() {
            break; // closed on us: fine
        }
    }
    let answer = read_to_close(&mut huge);
    assert_eq!(notice_code(&answer), LdapResultCode::AdminLimitExceeded);
    // Half a message, then nothing: closed once the idle timeout passes.
    let mut unfinished = TcpStream::connect(&address).unwrap();
    unfinished.write_all(&[0x30, 0x20, 0x02, 0x01]).unwrap();
    let answer = read_to_close(&mut unfinished);
    assert_eq!(notice_code(&answer), LdapResultCode::Unavailable);
    still_serving(&directory);
}

#[test]
fn connections_over_the_limit_are_told_busy() {
    let directory = Directory::start(|settings| settings.max_connections = 2);
    let address = format!("127.0.0.1:{}", directory.port);
    let _first = TcpStream::connect(&address).unwrap();
    let _second = TcpStream::connect(&address).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(&address).unwrap();
    let answer = read_to_close(&mut third);
    assert_eq!(notice_code(&answer), LdapResultCode::Busy);
}

fn search_all(id: i32) -> LdapMsg {
    LdapMsg::new(
        id,
        LdapOp::SearchRequest(LdapSearchRequest {
            base: BASE.to_owned(),
            scope: LdapSearchScope::Subtree,
            aliases: LdapDerefAliases::Never,
            sizelimit: 0,
            timelimit: 0,
            typesonly: false,
            filter: LdapFilter::Present("objectClass".to_owned()),
            attrs: Vec::new(),
        }),
    )
}

#[test]
fn abandon_and_unbind_mid_search_end_that_search_or_connection() {
    let directory = Directory::start(|_| {});
    let users: Vec<_> = (0..300)
        .map(|i| user_spec(json!({"username": format!("bulk{i:03}")})))
        .collect();
    directory.write(users);
    let address = format!("127.0.0.1:{}", directory.port);
    directory.block_on(async {
        let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let mut conn = Framed::new(stream, LdapCodec::default());
        conn.send(LdapMsg::new(
            1,
            LdapOp::BindRequest(LdapBindRequest {
                version: 3,
                dn: user_dn("alice"),
                cred: LdapBindCred::Simple(PASSWORD.to_owned()),
            }),
        ))
        .await
        .unwrap();
        let bound = conn.next().await.unwrap().unwrap();
        assert!(
            matches!(bound.op, LdapOp::BindResponse(ref r) if r.res.code == LdapResultCode::Success)
        );
        // A search of everything, abandoned at once, then a whoami.
        conn.feed(search_all(2)).await.unwrap();
        conn.feed(LdapMsg::new(3, LdapOp::AbandonRequest(2)))
            .await
            .unwrap();
        conn.send(LdapMsg::new(
            4,
            LdapOp::ExtendedRequest(ldap3_proto::proto::LdapExtendedRequest {
                name: "1.3.6.1.4.1.4203.1.11.3".to_owned(),
                value: None,
            }),
        ))
        .await
        .unwrap();
        let (mut entries, mut done) = (0, false);
        loop {
            let message = conn.next().await.unwrap().unwrap();
            match (message.msgid, message.op) {
                (2, LdapOp::SearchResultEntry(_)) => entries += 1,
                (2, LdapOp::SearchResultDone(_)) => done = true,
                (4, LdapOp::ExtendedResponse(response)) => {
                    assert_eq!(response.res.code, LdapResultCode::Success);
                    break;
                }
                (id, op) => panic!("unexpected answer {id}: {op:?}"),
            }
        }
        // Either the abandon stopped the search (no done, fewer entries), or it came
        // after the search had ended (every entry and its done).
        let total = 1 + 2 + 4 + 300 + 3;
        assert!(
            (!done && entries < total) || (done && entries == total),
            "{entries} {done}"
        );
        // A search, then an unbind: the connection ends.
        conn.feed(search_all(5)).await.unwrap();
        conn.send(LdapMsg::new(6, LdapOp::UnbindRequest))
            .await
            .unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(message) = conn.next().await {
                if message.is_err() {
                    break;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the connection stayed open after an unbind");
    });
    still_serving(&directory);
}
