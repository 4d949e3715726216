//! Sans-IO framing of what an SMTP client sends: command lines, DATA content and BDAT chunk content.
//!
//! smtp-proto parses a command once we have one; the strictness is ours. A line ends only at CRLF:
//! a bare CR or bare LF in a command line is an error (the connection is closed), and in message
//! content it makes the message rejected after its real end. Only `CRLF . CRLF` ends DATA, so the
//! SMTP smuggling sequences (`LF . LF`, `CR . CR`, `CRLF . CR`, `LF . CRLF`) never end or split a
//! message: they stay inside the content, whose bare CR/LF then gets the message rejected.

use memchr::{memchr, memchr2};

/// Why a command line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// A LF without CR before it, or a CR not followed by LF.
    BareLineEnding,
    /// The line (with its CRLF) was longer than the allowed maximum.
    TooLong,
}

/// One result of [`CommandFramer::next_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line of `len` bytes, CRLF included, at the start of the buffer.
    Line {
        /// Bytes of the line including the terminating CRLF.
        len: usize,
    },
    /// A refused line: drop `consumed` bytes and answer the error.
    Invalid {
        /// Bytes to drop from the start of the buffer.
        consumed: usize,
        /// What was wrong.
        error: LineError,
    },
    /// No complete line yet: drop `consumed` bytes (an over-long line's prefix) and read more.
    NeedMore {
        /// Bytes to drop from the start of the buffer (0 unless skipping an over-long line).
        consumed: usize,
    },
}

/// Splits a byte stream into strict CRLF command lines of bounded length.
#[derive(Debug, Default)]
pub struct CommandFramer {
    /// True while discarding the rest of a line that already exceeded the maximum.
    skipping_long_line: bool,
    /// While skipping: whether the last byte discarded was a CR (its LF may come in the next read).
    skipped_cr: bool,
}

impl CommandFramer {
    /// Looks for the next line at the start of `buffer`, at most `max_len` bytes with its CRLF.
    pub fn next_frame(&mut self, buffer: &[u8], max_len: usize) -> Frame {
        if self.skipping_long_line {
            return self.skip_long_line(buffer);
        }
        let Some(pos) = memchr2(b'\r', b'\n', buffer) else {
            return self.incomplete(buffer.len(), max_len);
        };
        if buffer[pos] == b'\n' {
            return Frame::Invalid {
                consumed: pos + 1,
                error: LineError::BareLineEnding,
            };
        }
        match buffer.get(pos + 1) {
            None => self.incomplete(buffer.len(), max_len),
            Some(b'\n') if pos + 2 > max_len => Frame::Invalid {
                consumed: pos + 2,
                error: LineError::TooLong,
            },
            Some(b'\n') => Frame::Line { len: pos + 2 },
            Some(_) => Frame::Invalid {
                consumed: pos + 1,
                error: LineError::BareLineEnding,
            },
        }
    }

    /// No line end in the buffer yet: wait, or start discarding a line that is already too long.
    fn incomplete(&mut self, buffered: usize, max_len: usize) -> Frame {
        if buffered < max_len {
            return Frame::NeedMore { consumed: 0 };
        }
        self.skipping_long_line = true;
        self.skipped_cr = false;
        Frame::NeedMore { consumed: 0 }
    }

    /// Discards bytes up to the end of an over-long line, then reports it.
    fn skip_long_line(&mut self, buffer: &[u8]) -> Frame {
        if self.skipped_cr && buffer.first() == Some(&b'\n') {
            self.skipping_long_line = false;
            return Frame::Invalid {
                consumed: 1,
                error: LineError::TooLong,
            };
        }
        match memchr(b'\n', buffer) {
            Some(pos) => {
                self.skipping_long_line = false;
                let bare = if pos == 0 {
                    !self.skipped_cr
                } else {
                    buffer[pos - 1] != b'\r'
                };
                let error = if bare {
                    LineError::BareLineEnding
                } else {
                    LineError::TooLong
                };
                Frame::Invalid {
                    consumed: pos + 1,
                    error,
                }
            }
            None => {
                self.skipped_cr = buffer.last() == Some(&b'\r');
                Frame::NeedMore {
                    consumed: buffer.len(),
                }
            }
        }
    }
}

/// Line discipline of message content: flags bare CR/LF and over-long lines across chunk boundaries.
#[derive(Clone, Debug, Default)]
pub struct ContentChecker {
    /// The previous byte was a CR whose LF has not been seen yet.
    pending_cr: bool,
    /// Bytes of the current line so far, without its line ending.
    line_len: usize,
    /// A bare CR or LF was seen.
    pub bare_line_ending: bool,
    /// A line longer than the limit was seen.
    pub long_line: bool,
    /// A byte above 127 was seen (8-bit content).
    pub eight_bit: bool,
}

/// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including its CRLF.
pub const MAX_TEXT_LINE: usize = 1000;

impl ContentChecker {
    /// Inspects the next slice of content.
    pub fn check(&mut self, mut bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if !self.eight_bit && !bytes.is_ascii() {
            self.eight_bit = true;
        }
        if self.pending_cr {
            self.pending_cr = false;
            if bytes[0] == b'\n' {
                self.end_line();
                bytes = &bytes[1..];
            } else {
                self.bare_line_ending = true;
            }
        }
        while let Some(pos) = memchr2(b'\r', b'\n', bytes) {
            self.line_len += pos;
            if bytes[pos] == b'\n' {
                self.bare_line_ending = true;
                self.end_line();
                bytes = &bytes[pos + 1..];
                continue;
            }
            match bytes.get(pos + 1) {
                Some(b'\n') => {
                    self.end_line();
                    bytes = &bytes[pos + 2..];
                }
                Some(_) => {
                    self.bare_line_ending = true;
                    bytes = &bytes[pos + 1..];
                }
                None => {
                    self.pending_cr = true;
                    return;
                }
            }
        }
        self.line_len += bytes.len();
        if self.line_len + 2 > MAX_TEXT_LINE {
            self.long_line = true;
        }
    }

    /// The content ended: a CR still waiting for its LF is bare.
    pub fn finish(&mut self) {
        if self.pending_cr {
            self.pending_cr = false;
            self.bare_line_ending = true;
        }
    }

    /// Closes the current line, checking its length.
    fn end_line(&mut self) {
        if self.line_len + 2 > MAX_TEXT_LINE {
            self.long_line = true;
        }
        self.line_len = 0;
    }
}

/// Where the DATA decoder is within the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataState {
    /// Right after CRLF (or the DATA command): a '.' here may start the terminator.
    LineStart,
    /// Saw '.' at the start of a line.
    Dot,
    /// Saw '.' CR at the start of a line: LF now ends the message.
    DotCr,
    /// Inside a line.
    Mid,
    /// Inside a line, right after a CR.
    Cr,
}

/// Decodes DATA content: dot-unstuffing, the strict `CRLF.CRLF` terminator, size bound, checks.
#[derive(Debug)]
pub struct DataDecoder {
    /// Position in the wire format.
    state: DataState,
    /// Decoded content so far (up to `max_size` bytes).
    content: Vec<u8>,
    /// Content beyond this many bytes is counted but not kept.
    max_size: usize,
    /// Decoded bytes seen in total (may exceed `max_size`).
    total: usize,
    /// Line discipline of the decoded content.
    checker: ContentChecker,
}

/// The result of a complete DATA transfer.
#[derive(Debug)]
pub struct DataOutcome {
    /// The decoded content (truncated if `too_big`).
    pub content: Vec<u8>,
    /// The content exceeded the maximum size.
    pub too_big: bool,
    /// Line discipline findings.
    pub checks: ContentChecker,
}

impl DataDecoder {
    /// A decoder at the start of DATA content, keeping at most `max_size` bytes.
    pub fn new(max_size: usize, size_hint: usize) -> DataDecoder {
        DataDecoder {
            state: DataState::LineStart,
            content: Vec::with_capacity(size_hint.min(max_size).min(1 << 20)),
            max_size,
            total: 0,
            checker: ContentChecker::default(),
        }
    }

    /// Feeds wire bytes. Returns how many were consumed and, once the terminator was read, the
    /// outcome (bytes after the terminator are not consumed: they are the next commands).
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<DataOutcome>) {
        let mut pos = 0;
        while pos < input.len() {
            if self.state == DataState::Mid {
                let run_end = memchr(b'\r', &input[pos..]).map_or(input.len(), |offset| pos + offset);
                self.emit(&input[pos..run_end]);
                pos = run_end;
                if pos == input.len() {
                    break;
                }
            }
            let byte = input[pos];
            pos += 1;
            if self.step(byte) {
                return (pos, Some(self.finish()));
            }
        }
        (pos, None)
    }

    /// Advances the state machine by one byte; true when the terminator is complete.
    fn step(&mut self, byte: u8) -> bool {
        use DataState::*;
        match (self.state, byte) {
            (LineStart, b'.') => self.state = Dot,
            (Dot, b'\r') => self.state = DotCr,
            (DotCr, b'\n') => return true,
            // "." CR followed by anything but LF: the dot is unstuffed and the CR is bare.
            (DotCr, _) => {
                self.emit(b"\r");
                self.take_byte(byte);
            }
            // A dot followed by other text is unstuffed (RFC 5321 4.5.2): it is not emitted.
            _ => self.take_byte(byte),
        }
        false
    }

    /// Emits one content byte and moves to the state it leads to.
    fn take_byte(&mut self, byte: u8) {
        use DataState::*;
        self.emit(&[byte]);
        self.state = match (self.state, byte) {
            (_, b'\r') => Cr,
            (Cr, b'\n') => LineStart,
            // A bare LF does not start a line: "LF . CRLF" must not end the message.
            _ => Mid,
        };
    }

    /// Appends decoded content (bounded) and runs the line checks on it.
    fn emit(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.checker.check(bytes);
        self.total += bytes.len();
        let room = self.max_size.saturating_sub(self.content.len());
        self.content.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Ends the transfer: the content closed with CRLF before the dot.
    fn finish(&mut self) -> DataOutcome {
        self.checker.finish();
        DataOutcome {
            content: std::mem::take(&mut self.content),
            too_big: self.total > self.max_size,
            checks: std::mem::take(&mut self.checker),
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
