use super::*;

/// The framer's output for one input: each line or error in order.
type Framed = Vec<Result<Vec<u8>, LineError>>;

/// Frames `input` completely, returning the lines and errors in order.
fn frame_all(input: &[u8], max_len: usize) -> Framed {
    let mut framer = CommandFramer::default();
    let mut buffer = input.to_vec();
    let mut out = Vec::new();
    for _ in 0..1000 {
        match framer.next_frame(&buffer, max_len) {
            Frame::Line { len } => {
                out.push(Ok(buffer[..len].to_vec()));
                buffer.drain(..len);
            }
            Frame::Invalid { consumed, error } => {
                out.push(Err(error));
                buffer.drain(..consumed);
            }
            Frame::NeedMore { consumed } => {
                buffer.drain(..consumed);
                if consumed == 0 {
                    return out;
                }
            }
        }
    }
    panic!("framer did not terminate");
}

#[test]
fn command_lines_table() {
    let ok = |s: &str| Ok(s.as_bytes().to_vec());
    let cases: Vec<(&[u8], Framed)> = vec![
        (b"NOOP\r\n", vec![ok("NOOP\r\n")]),
        (b"NOOP\r\nRSET\r\n", vec![ok("NOOP\r\n"), ok("RSET\r\n")]),
        (b"NOOP\r", vec![]),
        (b"NOOP", vec![]),
        (b"NOOP\n", vec![Err(LineError::BareLineEnding)]),
        (b"NO\rOP\r\n", vec![Err(LineError::BareLineEnding), ok("OP\r\n")]),
        (b"\n", vec![Err(LineError::BareLineEnding)]),
        (b"\r\r\n", vec![Err(LineError::BareLineEnding), ok("\r\n")]),
    ];
    for (input, expected) in cases {
        assert_eq!(
            frame_all(input, 512),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn line_of_exactly_the_maximum_is_accepted_and_one_more_is_refused() {
    let mut exact = vec![b'A'; 510];
    exact.extend_from_slice(b"\r\n");
    assert_eq!(frame_all(&exact, 512), vec![Ok(exact.clone())]);
    let mut over = vec![b'A'; 511];
    over.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(
        frame_all(&over, 512),
        vec![Err(LineError::TooLong), Ok(b"NOOP\r\n".to_vec())]
    );
}

#[test]
fn over_long_line_arriving_in_pieces_is_skipped_to_its_end() {
    let mut framer = CommandFramer::default();
    assert_eq!(
        framer.next_frame(&[b'X'; 600], 512),
        Frame::NeedMore { consumed: 0 }
    );
    assert_eq!(
        framer.next_frame(&[b'X'; 600], 512),
        Frame::NeedMore { consumed: 600 }
    );
    assert_eq!(framer.next_frame(b"XXX\r", 512), Frame::NeedMore { consumed: 4 });
    assert_eq!(
        framer.next_frame(b"\nNOOP\r\n", 512),
        Frame::Invalid {
            consumed: 1,
            error: LineError::TooLong
        }
    );
    assert_eq!(framer.next_frame(b"NOOP\r\n", 512), Frame::Line { len: 6 });
}

#[test]
fn over_long_line_ended_by_bare_lf_is_a_bare_line_ending() {
    let mut framer = CommandFramer::default();
    assert_eq!(
        framer.next_frame(&[b'X'; 600], 512),
        Frame::NeedMore { consumed: 0 }
    );
    assert_eq!(
        framer.next_frame(b"XX\nNOOP\r\n", 512),
        Frame::Invalid {
            consumed: 3,
            error: LineError::BareLineEnding
        }
    );
}

/// Decodes `wire` fed in pieces of `piece` bytes; returns (outcome, bytes left after the end).
fn decode(wire: &[u8], piece: usize) -> Option<(DataOutcome, Vec<u8>)> {
    let mut decoder = DataDecoder::new(1 << 20, 0);
    let mut offset = 0;
    while offset < wire.len() {
        let end = (offset + piece).min(wire.len());
        let (consumed, outcome) = decoder.feed(&wire[offset..end]);
        if let Some(outcome) = outcome {
            return Some((outcome, wire[offset + consumed..].to_vec()));
        }
        assert_eq!(consumed, end - offset, "all input is consumed before the end");
        offset = end;
    }
    None
}

#[test]
fn data_terminator_and_unstuffing_table() {
    // (wire bytes after DATA, expected content, expected leftover)
    let cases: &[(&[u8], &[u8], &[u8])] = &[
        (b".\r\n", b"", b""),
        (b"Subject: x\r\n\r\nhi\r\n.\r\n", b"Subject: x\r\n\r\nhi\r\n", b""),
        (b"a\r\n..b\r\n.\r\nNOOP\r\n", b"a\r\n.b\r\n", b"NOOP\r\n"),
        (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", b""),
        (b"a\r\n.\r\nQUIT\r\n.\r\n", b"a\r\n", b"QUIT\r\n.\r\n"),
    ];
    for piece in [1, 2, 3, 7, 4096] {
        for (wire, content, rest) in cases {
            let (outcome, leftover) = decode(wire, piece).expect("terminated");
            assert_eq!(
                outcome.content,
                *content,
                "wire {:?} piece {piece}",
                String::from_utf8_lossy(wire)
            );
            assert_eq!(leftover, *rest);
            assert!(!outcome.checks.bare_line_ending && !outcome.checks.long_line && !outcome.too_big);
        }
    }
}

/// The SMTP smuggling sequences: none of them may end the message; each makes it rejected.
#[test]
fn smuggling_sequences_never_end_a_message() {
    let sequences: &[&[u8]] = &[
        b"\n.\n",
        b"\r.\r",
        b"\r\n.\r",
        b"\n.\r\n",
        b"\r.\r\n",
        b"\n.\r",
        b"\r\n.\n",
        b"\n\n.\n\n",
    ];
    for piece in [1, 2, 5, 4096] {
        for sequence in sequences {
            let mut wire = b"Subject: hi\r\n\r\nbody".to_vec();
            wire.extend_from_slice(sequence);
            wire.extend_from_slice(
                b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n",
            );
            wire.extend_from_slice(b"smuggled\r\n.\r\n");
            let (outcome, leftover) = decode(&wire, piece).expect("ends at the real terminator");
            let shown = String::from_utf8_lossy(sequence);
            assert!(leftover.is_empty(), "{shown:?}: nothing after the real end");
            assert!(
                outcome.checks.bare_line_ending,
                "{shown:?} is flagged as a bare line ending"
            );
            let content = String::from_utf8_lossy(&outcome.content);
            assert!(
                content.contains("MAIL FROM:<evil"),
                "{shown:?}: smuggled commands stay in the content"
            );
            // Without the real terminator the decoder keeps waiting.
            let cut = wire.len() - b".\r\n".len();
            assert!(
                decode(&wire[..cut], piece).is_none(),
                "{shown:?} alone does not end DATA"
            );
        }
    }
}

#[test]
fn content_limits_are_flagged() {
    let mut long = vec![b'x'; 999];
    long.extend_from_slice(b"\r\n.\r\n");
    let (outcome, _) = decode(&long, 64).expect("terminated");
    assert!(
        outcome.checks.long_line,
        "999 characters + CRLF is over 1000 octets"
    );
    let mut fits = vec![b'x'; 998];
    fits.extend_from_slice(b"\r\n.\r\n");
    assert!(
        !decode(&fits, 64).expect("terminated").0.checks.long_line,
        "998 + CRLF fits"
    );

    let mut decoder = DataDecoder::new(10, 0);
    let (_, outcome) = decoder.feed(b"0123456789ABCDEF\r\n.\r\n");
    let outcome = outcome.expect("terminated");
    assert!(outcome.too_big);
    assert_eq!(
        outcome.content.len(),
        10,
        "content beyond the maximum is not kept"
    );
    let (outcome, _) = decode("caf\u{e9}\r\n.\r\n".as_bytes(), 3).expect("terminated");
    assert!(outcome.checks.eight_bit);
}

#[test]
fn content_checker_across_chunks() {
    // (chunks, bare line ending expected)
    let cases: &[(&[&[u8]], bool)] = &[
        (&[b"a\r", b"\nb\r\n"], false),
        (&[b"a\r", b"b\r\n"], true),
        (&[b"a\n"], true),
        (&[b"a\r\n", b"\r"], true),
        (&[b"", b"a\r\n"], false),
        (&[b"\r", b"\n", b"\r", b"\n"], false),
    ];
    for (chunks, bare) in cases {
        let mut checker = ContentChecker::default();
        for chunk in *chunks {
            checker.check(chunk);
        }
        checker.finish();
        assert_eq!(checker.bare_line_ending, *bare, "chunks {chunks:?}");
    }
    let mut checker = ContentChecker::default();
    checker.check(&[b'y'; 600]);
    checker.check(&[b'y'; 600]);
    checker.check(b"\r\n");
    assert!(checker.long_line, "a line split over chunks is measured whole");
}
