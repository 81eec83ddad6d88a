//! Reading a chunked body (RFC 9112 §7.1) as it passes through: the raw exchange needs to know
//! where the last chunk ends, refuses any size line it could read differently from another
//! parser, and hands the client a plain form of the same chunks. Chunk data and the digits of
//! each size pass unchanged; chunk extensions and the trailer section are dropped (the client
//! needs neither, and nginx relays neither), so the output is the input with some bytes taken
//! out, which lets the scan compact the buffer in place. A body without extensions or trailers
//! (the usual one) is not moved at all.

/// Longest chunk-size line (with extensions) or trailer section accepted.
const MAX_LINE: usize = 8 * 1024;
/// Most hex digits in a chunk size (60 bits: it cannot overflow `u64`).
const MAX_DIGITS: u8 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Reading the chunk size (hex digits so far).
    #[default]
    Size,
    /// Whitespace after the size: only a `;` may follow.
    SizeWs,
    /// After the `;`: extensions up to CR.
    Extension,
    /// Expecting LF after the size line.
    SizeLf,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Expecting LF after a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// What one [`Chunked::scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scanned {
    /// The bytes at the start of the buffer to send on (after compaction).
    pub(super) keep: usize,
    /// The bytes of the buffer that belonged to the body.
    pub(super) used: usize,
    /// The body ended within them.
    pub(super) done: bool,
}

/// Tracks a chunked body across reads.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: State,
    size: u64,
    digits: u8,
    line: usize,
}

impl Chunked {
    /// Scans `bytes`, the next part of the body, and moves the bytes the client gets to its
    /// start (see [`Scanned`]). An error for a body that breaks the chunked syntax.
    pub(super) fn scan(&mut self, bytes: &mut [u8]) -> Result<Scanned, &'static str> {
        // `i` reads, `w` writes; they differ only once something was dropped.
        let mut i = 0;
        let mut w = 0;
        while i < bytes.len() {
            if self.state == State::Done {
                break;
            }
            if let State::Data(left) = self.state {
                let take = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                if w != i {
                    bytes.copy_within(i..i + take, w);
                }
                i += take;
                w += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            let b = bytes[i];
            i += 1;
            let (next, keep) = self.step(b)?;
            self.state = next;
            if keep {
                bytes[w] = b;
                w += 1;
            }
        }
        Ok(Scanned {
            keep: w,
            used: i,
            done: self.state == State::Done,
        })
    }

    /// The state after byte `b` outside chunk data, and whether `b` goes to the client.
    fn step(&mut self, b: u8) -> Result<(State, bool), &'static str> {
        Ok(match self.state {
            State::Size => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if self.digits >= MAX_DIGITS {
                        return Err("chunk size too large");
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    self.size = self.size * 16 + d;
                    self.digits += 1;
                    (State::Size, true)
                }
                // RFC 9112 allows whitespace after the size only before an extension's `;`:
                // `2 5` would be 2 here and 0x25 to a reader that skips spaces.
                b' ' | b'\t' if self.digits > 0 => {
                    self.line = 0;
                    (State::SizeWs, false)
                }
                b';' if self.digits > 0 => {
                    self.line = 0;
                    (State::Extension, false)
                }
                b'\r' if self.digits > 0 => (State::SizeLf, true),
                _ => return Err("invalid chunk size"),
            },
            State::SizeWs => match b {
                b' ' | b'\t' => (self.line_byte(State::SizeWs)?, false),
                b';' => (State::Extension, false),
                _ => return Err("invalid chunk size line"),
            },
            State::Extension => match b {
                b'\r' => (State::SizeLf, true),
                b'\n' => return Err("bare LF in a chunk extension"),
                _ => (self.line_byte(State::Extension)?, false),
            },
            State::SizeLf => {
                if b != b'\n' {
                    return Err("chunk size line not ended by CRLF");
                }
                let size = std::mem::take(&mut self.size);
                self.digits = 0;
                if size == 0 {
                    self.line = 0;
                    (State::TrailerStart, true)
                } else {
                    (State::Data(size), true)
                }
            }
            State::DataCr => match b {
                b'\r' => (State::DataLf, true),
                _ => return Err("chunk data not followed by CRLF"),
            },
            State::DataLf => match b {
                b'\n' => (State::Size, true),
                _ => return Err("chunk data not followed by CRLF"),
            },
            // Trailer fields are dropped; the final empty line is kept. A bare LF would end
            // the line for a lenient reader and not for this one: refused, so both always
            // agree on where the body ends.
            State::TrailerStart => match b {
                b'\r' => (State::EndLf, true),
                b'\n' => return Err("bare LF in the trailer section"),
                _ => (self.line_byte(State::Trailer)?, false),
            },
            State::Trailer => match b {
                b'\r' => (State::TrailerLf, false),
                b'\n' => return Err("bare LF in the trailer section"),
                _ => (self.line_byte(State::Trailer)?, false),
            },
            State::TrailerLf => match b {
                b'\n' => (State::TrailerStart, false),
                _ => return Err("trailer line not ended by CRLF"),
            },
            State::EndLf => match b {
                b'\n' => (State::Done, true),
                _ => return Err("chunked body not ended by CRLF"),
            },
            // Both are handled before a byte is taken.
            s @ (State::Data(_) | State::Done) => (s, false),
        })
    }

    /// Counts one more byte of a size line's tail or of the trailer section.
    fn line_byte(&mut self, next: State) -> Result<State, &'static str> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err("chunk size line or trailer section too long");
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `body` whole and split at every position: the end and the bytes for the client
    /// are the same each time. Returns where the body ends (if it does) and those bytes.
    fn scanned(body: &[u8]) -> Result<(Option<usize>, Vec<u8>), &'static str> {
        let mut whole = Chunked::default();
        let mut all = body.to_vec();
        let s = whole.scan(&mut all)?;
        let expected = (s.done.then_some(s.used), all[..s.keep].to_vec());
        for split in 0..=body.len() {
            let mut c = Chunked::default();
            let (mut a, mut b) = (body[..split].to_vec(), body[split..].to_vec());
            let first = c.scan(&mut a)?;
            let mut kept = a[..first.keep].to_vec();
            let end = if first.done {
                Some(first.used)
            } else {
                let second = c.scan(&mut b)?;
                kept.extend_from_slice(&b[..second.keep]);
                second.done.then_some(split + second.used)
            };
            assert_eq!((end, kept), expected, "split at {split}");
        }
        Ok(expected)
    }

    #[test]
    fn chunked_bodies_end_where_the_syntax_says() {
        // (body, where it ends: none while incomplete, an error when malformed)
        type Case = (&'static [u8], Result<Option<usize>, ()>);
        let table: &[Case] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", Ok(Some(15))),
            (b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200", Ok(Some(15))),
            (b"5;name=value\r\nhello\r\n0\r\n\r\n", Ok(Some(26))),
            (b"5 \t;name=value\r\nhello\r\n0\r\n\r\n", Ok(Some(28))),
            (
                b"A\r\n0123456789\r\n0\r\nx-sum: 1\r\nx-b: 2\r\n\r\n",
                Ok(Some(38)),
            ),
            (b"5\r\nhello\r\n", Ok(None)),
            (b"5\r\nhello\r\n0\r\n", Ok(None)),
            (b"0\r\n\r\n", Ok(Some(5))),
            (b"000000000000005\r\nhello\r\n0\r\n\r\n", Ok(Some(29))),
            (b"zz\r\n", Err(())),
            (b"\r\n", Err(())),
            (b";x\r\n", Err(())),
            (b" 5\r\n", Err(())),
            (b"5\nhello\r\n", Err(())),
            (b"5\r\nhelloXX0\r\n\r\n", Err(())),
            (b"ffffffffffffffffff\r\n", Err(())),
            (b"10000000000000000\r\n", Err(())),
            (b"0x2\r\nhi\r\n0\r\n\r\n", Err(())),
            (b"-2\r\nhi\r\n0\r\n\r\n", Err(())),
            (b"+2\r\nhi\r\n0\r\n\r\n", Err(())),
            // Whitespace after the size is allowed only before an extension.
            (b"2 5\r\nhi\r\n0\r\n\r\n", Err(())),
            (b"2 \r\nhi\r\n0\r\n\r\n", Err(())),
            (b"2\t\r\nhi\r\n0\r\n\r\n", Err(())),
            (b"2;x\nhi\r\n0\r\n\r\n", Err(())),
            (b"0\r\nx: 1\n\r\n", Err(())),
            (b"0\r\n\n", Err(())),
            (b"0\r\nx: 1\rx", Err(())),
        ];
        for (body, expected) in table {
            let got = scanned(body).map(|(end, _)| end).map_err(|_| ());
            assert_eq!(&got, expected, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn extensions_and_trailers_do_not_reach_the_client() {
        let table: &[(&[u8], &[u8])] = &[
            // The usual body is left as it is.
            (b"5\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
            (
                b"5;a=1;b=\"x y\"\r\nhello\r\n6 ; c\r\n world\r\n0;last\r\nSet-Cookie: sid=x\r\nx-sum: 11\r\n\r\n",
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            ),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"A\r\n0123456789\r\n0\r\n\r\n"),
            // What follows the body is not part of it.
            (
                b"1;x\r\na\r\n0\r\nt: 1\r\n\r\nHTTP/1.1",
                b"1\r\na\r\n0\r\n\r\n",
            ),
        ];
        for (body, client) in table {
            let (_, kept) = scanned(body).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&kept),
                String::from_utf8_lossy(client),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_long_extension_or_trailer_section_is_refused() {
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        assert!(Chunked::default().scan(&mut line).is_err());
        let mut trailer = b"0\r\n".to_vec();
        trailer.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        assert!(Chunked::default().scan(&mut trailer).is_err());
    }
}
