//! Files of the audit directory: segment naming (`seg-<first seq, 20 digits>.log`), listing,
//! and a line reader that reports offsets and an unterminated last line.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Signed checkpoints, one canonical JSON line each.
pub const CHECKPOINTS_FILE: &str = "checkpoints.log";
/// Copy of the node's public key, so `verify --dir` needs nothing else.
pub const PUBLIC_KEY_FILE: &str = "node.pub";
/// flock(2)ed by the writer so two daemons never append to one directory.
pub const LOCK_FILE: &str = "LOCK";

const PREFIX: &str = "seg-";
const SUFFIX: &str = ".log";

/// File name of the segment whose first record has `first_seq`; zero-padded so that name
/// order is seq order.
pub fn segment_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:020}{SUFFIX}")
}

/// The first seq a segment name claims, if it is a segment name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}

/// A segment file found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub first_seq: u64,
    pub name: String,
    pub path: PathBuf,
}

/// Segments in seq order.
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some(first_seq) = parse_segment_name(&name) {
            out.push(SegmentFile {
                first_seq,
                path: entry.path(),
                name,
            });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// One line of a file.
#[derive(Debug)]
pub struct Line<'a> {
    /// 1-based.
    pub number: u64,
    /// Byte offset of the line's first byte.
    pub offset: u64,
    /// The line without its `\n`.
    pub bytes: &'a [u8],
    /// False for a last line without `\n` (a torn or truncated write).
    pub complete: bool,
}

/// Reads `\n`-terminated lines, keeping count of offsets.
pub struct Lines<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    number: u64,
    offset: u64,
}

impl Lines<File> {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Lines::new(File::open(path)?))
    }
}

impl<R: Read> Lines<R> {
    pub fn new(reader: R) -> Self {
        Lines {
            reader: BufReader::with_capacity(1 << 16, reader),
            buf: Vec::new(),
            number: 0,
            offset: 0,
        }
    }

    /// Bytes consumed so far (the offset just past the last line returned).
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// The next line, or None at end of file.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        let offset = self.offset;
        self.offset += n as u64;
        self.number += 1;
        let complete = self.buf.last() == Some(&b'\n');
        let bytes = if complete {
            &self.buf[..n - 1]
        } else {
            &self.buf[..]
        };
        Ok(Some(Line {
            number: self.number,
            offset,
            bytes,
            complete,
        }))
    }
}

#[cfg(test)]
mod tests;
