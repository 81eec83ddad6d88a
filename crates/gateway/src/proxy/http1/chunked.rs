//! Finding where a chunked body ends (RFC 9112 §7.1) while its bytes pass through unchanged:
//! the raw exchange forwards a backend's chunks as they are and only needs to know when the
//! last one (and the trailer section) is over.

/// Longest chunk-size line (with extensions) or trailer section accepted.
const MAX_LINE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Reading the chunk size (hex digits so far).
    #[default]
    Size,
    /// After the size: extensions up to CR.
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

/// Tracks a chunked body across reads.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: State,
    size: u64,
    digits: u8,
    line: usize,
}

impl Chunked {
    /// Scans `bytes`, the next part of the body: how many of them belong to it, and whether it
    /// ended there. An error for a body that breaks the chunked syntax.
    pub(super) fn scan(&mut self, bytes: &[u8]) -> Result<(usize, bool), &'static str> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Done {
                break;
            }
            if let State::Data(left) = self.state {
                let take = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                i += take;
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
            self.state = match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits >= 15 {
                            return Err("chunk size too large");
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.size = self.size * 16 + d;
                        self.digits += 1;
                        State::Size
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => {
                        self.line = 0;
                        State::Extension
                    }
                    b'\r' if self.digits > 0 => State::SizeLf,
                    _ => return Err("invalid chunk size"),
                },
                State::Extension => match b {
                    b'\r' => State::SizeLf,
                    b'\n' => return Err("bare LF in a chunk extension"),
                    _ => {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return Err("chunk extension too long");
                        }
                        State::Extension
                    }
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err("chunk size line not ended by CRLF");
                    }
                    let size = std::mem::take(&mut self.size);
                    self.digits = 0;
                    if size == 0 {
                        self.line = 0;
                        State::TrailerStart
                    } else {
                        State::Data(size)
                    }
                }
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    _ => return Err("chunk data not followed by CRLF"),
                },
                State::DataLf => match b {
                    b'\n' => State::Size,
                    _ => return Err("chunk data not followed by CRLF"),
                },
                // A bare LF would end the line for a lenient reader and not for this one:
                // refused, so both always agree on where the body ends.
                State::TrailerStart => match b {
                    b'\r' => State::EndLf,
                    b'\n' => return Err("bare LF in the trailer section"),
                    _ => self.trailer_byte()?,
                },
                State::Trailer => match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err("bare LF in the trailer section"),
                    _ => self.trailer_byte()?,
                },
                State::TrailerLf => match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err("trailer line not ended by CRLF"),
                },
                State::EndLf => match b {
                    b'\n' => State::Done,
                    _ => return Err("chunked body not ended by CRLF"),
                },
                // Both are handled before a byte is taken.
                s @ (State::Data(_) | State::Done) => s,
            };
        }
        Ok((i, self.state == State::Done))
    }

    fn trailer_byte(&mut self) -> Result<State, &'static str> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err("trailer section too long");
        }
        Ok(State::Trailer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `body` split at every position: the end is found at the same place each time.
    fn end_of(body: &[u8]) -> Result<Option<usize>, &'static str> {
        let mut whole = Chunked::default();
        let (used, done) = whole.scan(body)?;
        let expected = done.then_some(used);
        for split in 0..=body.len() {
            let mut c = Chunked::default();
            let (a, done_a) = c.scan(&body[..split])?;
            let got = if done_a {
                Some(a)
            } else {
                let (b, done_b) = c.scan(&body[split..])?;
                done_b.then_some(split + b)
            };
            assert_eq!(got, expected, "split at {split}");
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
            (
                b"A\r\n0123456789\r\n0\r\nx-sum: 1\r\nx-b: 2\r\n\r\n",
                Ok(Some(38)),
            ),
            (b"5\r\nhello\r\n", Ok(None)),
            (b"5\r\nhello\r\n0\r\n", Ok(None)),
            (b"0\r\n\r\n", Ok(Some(5))),
            (b"zz\r\n", Err(())),
            (b"\r\n", Err(())),
            (b"5\nhello\r\n", Err(())),
            (b"5\r\nhelloXX0\r\n\r\n", Err(())),
            (b"ffffffffffffffffff\r\n", Err(())),
            (b"0\r\nx: 1\n\r\n", Err(())),
            (b"0\r\n\n", Err(())),
        ];
        for (body, expected) in table {
            let got = end_of(body).map_err(|_| ());
            assert_eq!(&got, expected, "{}", String::from_utf8_lossy(body));
        }
    }
}
