//! A line reader over a large buffer that reuses its line buffer and caps line length.

use std::io::{BufRead, BufReader, ErrorKind, Read};

use crate::bad::MAX_RAW_BYTES;

/// Read buffer size.
const BUFFER_BYTES: usize = 1 << 20;

/// One line, without its `\n` (and, for a line within the cap, without a trailing `\r`).
pub(crate) enum Line<'a> {
    /// A line within the cap.
    Text(&'a [u8]),
    /// A line longer than the cap: only its first bytes are kept.
    TooLong {
        /// The line's length in bytes.
        len: u64,
        /// Its first bytes (for the dead-letter output).
        head: &'a [u8],
    },
}

/// Reads lines one at a time into a reused buffer.
pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
    line: u64,
    max: usize,
    consumed: u64,
}

impl<R: Read> LineReader<R> {
    /// Lines longer than `max` bytes come back as [`Line::TooLong`].
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::with_capacity(BUFFER_BYTES, inner),
            buf: Vec::new(),
            line: 0,
            max,
            consumed: 0,
        }
    }

    /// Bytes consumed so far (lines and their line ends).
    pub(crate) fn bytes_read(&self) -> u64 {
        self.consumed
    }

    /// The next line and its 1-based number, or `None` at the end.
    pub(crate) fn next_line(&mut self) -> std::io::Result<Option<(u64, Line<'_>)>> {
        self.buf.clear();
        let mut total: u64 = 0;
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (take, newline) = match memchr::memchr(b'\n', available) {
                Some(at) => (at, true),
                None => (available.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > self.max {
                    too_long = true;
                    let room = MAX_RAW_BYTES.saturating_sub(self.buf.len()).min(take);
                    self.buf.extend_from_slice(&available[..room]);
                } else {
                    self.buf.extend_from_slice(&available[..take]);
                }
            }
            total += take as u64;
            self.consumed += (take + usize::from(newline)) as u64;
            self.inner.consume(take + usize::from(newline));
            if newline {
                break;
            }
        }
        self.line += 1;
        if too_long {
            let head = &self.buf[..self.buf.len().min(MAX_RAW_BYTES)];
            return Ok(Some((self.line, Line::TooLong { len: total, head })));
        }
        let mut text = &self.buf[..];
        if let [rest @ .., b'\r'] = text {
            text = rest;
        }
        Ok(Some((self.line, Line::Text(text))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize) -> Vec<(u64, Result<Vec<u8>, u64>)> {
        let mut reader = LineReader::new(input, max);
        let mut all = Vec::new();
        while let Some((n, line)) = reader.next_line().unwrap() {
            all.push((
                n,
                match line {
                    Line::Text(t) => Ok(t.to_vec()),
                    Line::TooLong { len, head } => {
                        assert!(head.len() <= MAX_RAW_BYTES);
                        Err(len)
                    }
                },
            ));
        }
        all
    }

    #[test]
    fn splits_lines_crlf_and_last_line_without_newline() {
        let lines = collect(b"a\r\nbc\n\n\r\nd", 100);
        let expect: Vec<(u64, Result<Vec<u8>, u64>)> = vec![
            (1, Ok(b"a".to_vec())),
            (2, Ok(b"bc".to_vec())),
            (3, Ok(vec![])),
            (4, Ok(vec![])),
            (5, Ok(b"d".to_vec())),
        ];
        assert_eq!(lines, expect);
        assert!(collect(b"", 100).is_empty());
        assert_eq!(collect(b"x\n", 100).len(), 1);
    }

    #[test]
    fn long_lines_are_capped_and_reading_goes_on() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nok\n");
        let lines = collect(&input, 5_000);
        assert_eq!(lines, vec![(1, Err(10_000)), (2, Ok(b"ok".to_vec()))]);
        let mut reader = LineReader::new(&input[..], 5_000);
        while reader.next_line().unwrap().is_some() {}
        assert_eq!(reader.bytes_read(), input.len() as u64);
    }
}
