//! Unit tests of the HTTP cutter: the ParseResult contract on every prefix, framing, limits.

use super::*;

const LIMITS: Limits = Limits {
    max_header: 1024,
    max_body: 4096,
};

fn req(bytes: &[u8]) -> (IOBuf, ParseSide) {
    (IOBuf::from(bytes), ParseSide::default())
}

fn request(cut: Cut) -> (HttpRequest, RequestMeta) {
    match cut {
        Cut::Request(r, m) => (r, m),
        other => panic!("expected a request, got {other:?}"),
    }
}

fn status(cut: Cut) -> (u16, bool) {
    match cut {
        Cut::Reject { status, close, .. } => (status, close),
        other => panic!("expected a reject, got {other:?}"),
    }
}

#[test]
fn classify_by_first_bytes() {
    assert_eq!(classify(&IOBuf::from(&b"GET /"[..])), Ok(Kind::Request));
    assert_eq!(
        classify(&IOBuf::from(&b"HTTP/1.1 200"[..])),
        Ok(Kind::Response)
    );
    assert_eq!(
        classify(&IOBuf::from(&b"PO"[..])),
        Err(ParseError::NotEnoughData)
    );
    assert_eq!(
        classify(&IOBuf::from(&b"H"[..])),
        Err(ParseError::NotEnoughData)
    );
    assert_eq!(
        classify(&IOBuf::from(&b"PRPC"[..])),
        Err(ParseError::TryOthers)
    );
    assert_eq!(
        classify(&IOBuf::from(&b"GETX"[..])),
        Err(ParseError::TryOthers)
    );
    assert_eq!(classify(&IOBuf::new()), Err(ParseError::TryOthers));
    assert_eq!(
        classify(&IOBuf::from(&b"\x00\x01"[..])),
        Err(ParseError::TryOthers)
    );
}

#[test]
fn every_prefix_waits_and_consumes_nothing() {
    let whole: &[u8] =
        b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
    let first = whole.len() - "GET / HTTP/1.1\r\n\r\n".len();
    for n in 0..first {
        let (mut b, mut st) = req(&whole[..n]);
        if n == 0 {
            continue;
        }
        assert_eq!(
            parse_request(&mut b, &LIMITS, &mut st).unwrap_err(),
            ParseError::NotEnoughData,
            "prefix {n}"
        );
        assert_eq!(b.len(), n);
    }
    let (mut b, mut st) = req(whole);
    let (r, meta) = request(parse_request(&mut b, &LIMITS, &mut st).unwrap());
    assert_eq!(r.method(), "POST");
    assert_eq!(r.path(), "/a");
    assert_eq!(r.query_param("b").as_deref(), Some("1"));
    assert_eq!(r.header("HOST"), Some("x"));
    assert_eq!(r.body, &b"hello"[..]);
    assert!(meta.keep_alive);
    let (r, _) = request(parse_request(&mut b, &LIMITS, &mut st).unwrap());
    assert_eq!(r.path(), "/");
    assert!(b.is_empty());
}

#[test]
fn head_split_across_blocks_is_copied() {
    let mut b = IOBuf::new();
    b.append_owned(IOBuf::from(&b"GET /x HT"[..]));
    b.append_owned(IOBuf::from(&b"TP/1.1\r\nA: b\r\n\r\n"[..]));
    let mut st = ParseSide::default();
    let (r, _) = request(parse_request(&mut b, &LIMITS, &mut st).unwrap());
    assert_eq!(r.header("a"), Some("b"));
}

#[test]
fn chunked_request_body() {
    let whole: &[u8] =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    for n in 1..whole.len() {
        let (mut b, mut st) = req(&whole[..n]);
        assert_eq!(
            parse_request(&mut b, &LIMITS, &mut st).unwrap_err(),
            ParseError::NotEnoughData,
            "prefix {n}"
        );
        assert_eq!(b.len(), n);
    }
    let (mut b, mut st) = req(whole);
    let (r, _) = request(parse_request(&mut b, &LIMITS, &mut st).unwrap());
    assert_eq!(r.body, &b"hello world"[..]);
    assert!(b.is_empty());

    for bad in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    ] {
        let (mut b, mut st) = req(bad);
        assert_eq!(
            status(parse_request(&mut b, &LIMITS, &mut st).unwrap()),
            (400, true)
        );
        assert!(b.is_empty());
    }
    let (mut b, mut st) = req(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2000\r\n");
    assert_eq!(
        status(parse_request(&mut b, &LIMITS, &mut st).unwrap()),
        (413, true)
    );
}

#[test]
fn limits_and_skipping() {
    // A head that never ends within the limit: 431 and close.
    let mut long = b"GET / HTTP/1.1\r\n".to_vec();
    while long.len() < 1100 {
        long.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let (mut b, mut st) = req(&long);
    assert_eq!(
        status(parse_request(&mut b, &LIMITS, &mut st).unwrap()),
        (431, true)
    );
    // Too many headers: 431.
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..70 {
        many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let big = Limits {
        max_header: 4096,
        ..LIMITS
    };
    let (mut b, mut st) = req(&many);
    assert_eq!(
        status(parse_request(&mut b, &big, &mut st).unwrap()),
        (431, true)
    );

    // A declared body over the limit: 413 now, the body is skipped as it arrives.
    let (mut b, mut st) = req(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\nabc");
    assert_eq!(
        status(parse_request(&mut b, &LIMITS, &mut st).unwrap()),
        (413, false)
    );
    assert!(b.is_empty());
    assert_eq!(st.skip, 4997);
    b.append(&vec![b'z'; 4997]);
    b.append(b"GET /next HTTP/1.1\r\n\r\n");
    assert!(matches!(
        parse_request(&mut b, &LIMITS, &mut st),
        Ok(Cut::Skip)
    ));
    let (r, _) = request(parse_request(&mut b, &LIMITS, &mut st).unwrap());
    assert_eq!(r.path(), "/next");
}

#[test]
fn malformed_and_versions() {
    let (mut b, mut st) = req(b"GET /\x01 HTTP/1.1\r\n\r\nmore");
    assert_eq!(
        status(parse_request(&mut b, &LIMITS, &mut st).unwrap()),
        (400, true)
    );
    assert!(b.is_empty());
    let (mut b, mut st) = req(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
    assert_eq!(
        status(parse_request(&mut b, &LIMITS, &mut st).unwrap()),
        (400, true)
    );

    let (mut b, mut st) = req(b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n");
    let (r, meta) = request(parse_request(&mut b, &LIMITS, &mut st).unwrap());
    assert_eq!(r.minor_version(), 0);
    assert!(!meta.keep_alive);
    // After a closing request everything is discarded.
    assert!(matches!(
        parse_request(&mut b, &LIMITS, &mut st),
        Ok(Cut::Skip)
    ));
    assert!(b.is_empty());

    let (mut b, mut st) = req(b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let (_, meta) = request(parse_request(&mut b, &LIMITS, &mut st).unwrap());
    assert!(meta.keep_alive && meta.head_only);
    let (mut b, mut st) = req(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    let (_, meta) = request(parse_request(&mut b, &LIMITS, &mut st).unwrap());
    assert!(!meta.keep_alive);
}

#[test]
fn expect_continue_is_flagged_once_head_is_read() {
    let (mut b, mut st) =
        req(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(
        parse_request(&mut b, &LIMITS, &mut st).unwrap_err(),
        ParseError::NotEnoughData
    );
    assert!(st.send_continue);
    b.append(b"abc");
    let (r, _) = request(parse_request(&mut b, &LIMITS, &mut st).unwrap());
    assert_eq!(r.body, &b"abc"[..]);
    assert!(!st.send_continue && !st.continue_sent);
}

#[test]
fn responses() {
    let whole: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok";
    for n in 1..whole.len() {
        let mut b = IOBuf::from(&whole[..n]);
        assert_eq!(
            parse_response(&mut b, &LIMITS, false).unwrap_err(),
            ParseError::NotEnoughData
        );
        assert_eq!(b.len(), n);
    }
    let mut b = IOBuf::from(whole);
    match parse_response(&mut b, &LIMITS, false).unwrap() {
        Cut::Response(r) => {
            assert_eq!(r.status, 200);
            assert_eq!(r.header("x-a"), Some("b"));
            assert_eq!(r.body, &b"ok"[..]);
        }
        other => panic!("{other:?}"),
    }
    // Interim responses are skipped; chunked and until-close bodies.
    let mut b = IOBuf::from(
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..],
    );
    assert!(matches!(
        parse_response(&mut b, &LIMITS, false),
        Ok(Cut::Skip)
    ));
    match parse_response(&mut b, &LIMITS, false).unwrap() {
        Cut::Response(r) => {
            assert_eq!((r.status, r.chunked), (404, true));
            assert_eq!(r.body, &b"abc"[..]);
        }
        other => panic!("{other:?}"),
    }
    let mut b = IOBuf::from(&b"HTTP/1.0 200 OK\r\n\r\nuntil close"[..]);
    assert_eq!(
        parse_response(&mut b, &LIMITS, false).unwrap_err(),
        ParseError::NotEnoughData
    );
    match parse_response(&mut b, &LIMITS, true).unwrap() {
        Cut::Response(r) => assert_eq!(r.body, &b"until close"[..]),
        other => panic!("{other:?}"),
    }
    let mut b = IOBuf::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n"[..]);
    assert!(matches!(
        parse_response(&mut b, &LIMITS, false),
        Err(ParseError::TooBigData { .. })
    ));
    let mut b = IOBuf::from(&b"HTTP/1.1 2x0 OK\r\n\r\n"[..]);
    assert!(matches!(
        parse_response(&mut b, &LIMITS, false),
        Err(ParseError::AbsolutelyWrong(_))
    ));
}

/// Arbitrary bytes after a method never panic and keep the contract.
#[test]
fn fuzz_never_panics() {
    use proptest::prelude::*;
    proptest!(ProptestConfig::with_cases(500), |(tail in proptest::collection::vec(any::<u8>(), 0..300), split in 0usize..300)| {
        let mut whole = b"POST /".to_vec();
        whole.extend_from_slice(&tail);
        let n = split.min(whole.len());
        let mut b = IOBuf::from(&whole[..n]);
        let mut st = ParseSide::default();
        match parse_request(&mut b, &LIMITS, &mut st) {
            Err(ParseError::NotEnoughData) => prop_assert_eq!(b.len(), n),
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
            Ok(_) => {}
        }
        let mut whole = b"HTTP/1.1 ".to_vec();
        whole.extend_from_slice(&tail);
        let mut b = IOBuf::from(&whole[..]);
        let before = b.len();
        if let Err(ParseError::NotEnoughData) = parse_response(&mut b, &LIMITS, false) {
            prop_assert_eq!(b.len(), before);
        }
    });
}
