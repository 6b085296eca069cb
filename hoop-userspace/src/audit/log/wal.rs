//! The write-ahead file `<dir>/wal`, for `written` durability.
//!
//! Every sealed record is copied, in chain order, into a shared mapping of this file: the copy
//! is in the page cache, so it survives a kill -9 of hoopd as a write(2) would, for a memcpy
//! instead of a system call on the request's path. The sync thread (or an appender, when this
//! file is full) then files the records into the segment in batches, and the space they took
//! is reused. Opening a log files whatever records of the file continue the chain (what a
//! kill -9 left unfiled) before anything else; records that do not (already filed, or damaged
//! by a host crash — the segment's fdatasync covers those) are passed over.
//!
//! Layout: a 4 KiB header (`MAGIC`, capacity, `head` and `filed` as little-endian u64 byte
//! positions that only grow), then a circular data area of `capacity` bytes: the bytes from
//! `filed` to `head` (positions modulo the capacity) are records not yet known to be filed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use std::time::SystemTime;

use memmap2::MmapMut;

use crate::audit::record::{Hash, Record};
use crate::audit::time;

/// The file's name in the log directory.
pub const WAL_FILE: &str = "wal";
const MAGIC: &[u8; 8] = b"hoopwal1";
const HEADER: usize = 4096;
const CAP_AT: usize = 8;
const HEAD_AT: usize = 16;
const FILED_AT: usize = 24;
/// Default data capacity: at 30k records/s of ~700 bytes, ~200 ms of records between filings
/// (which come every `sync_interval_ms`).
pub const DEFAULT_CAPACITY: usize = 4 << 20;

pub(crate) struct Wal {
    map: MmapMut,
    cap: u64,
    head: u64,
    filed: u64,
}

impl Wal {
    /// Reads what a previous run left unfiled (complete or not: the caller parses it), without
    /// changing the file. `None` if there is no file or it is not a write-ahead file of ours.
    pub fn leftover(dir: &Path) -> io::Result<Option<Vec<u8>>> {
        let bytes = match std::fs::read(dir.join(WAL_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Ok(None);
        }
        let cap = u64_at(&bytes, CAP_AT);
        let (head, filed) = (u64_at(&bytes, HEAD_AT), u64_at(&bytes, FILED_AT));
        if cap == 0 || bytes.len() as u64 != HEADER as u64 + cap || filed > head {
            return Ok(None);
        }
        let len = (head - filed).min(cap) as usize;
        let data = &bytes[HEADER..];
        let start = (filed % cap) as usize;
        let first = len.min(cap as usize - start);
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&data[start..start + first]);
        out.extend_from_slice(&data[..len - first]);
        Ok(Some(out))
    }

    /// Creates the file afresh (empty, `cap` bytes of data area, owner-only) and maps it.
    pub fn create(dir: &Path, cap: usize) -> io::Result<Wal> {
        let path = dir.join(WAL_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        file.set_len((HEADER + cap) as u64)?;
        // Blocks for the whole file now: a page fault on a sparse hole could fail (SIGBUS) on
        // a full disk; a failed fallocate here only means no write-ahead file.
        allocate(&file, HEADER + cap)?;
        // SAFETY: the file is owner-only in the log directory, which this process holds the
        // flock of; nothing else maps or writes it while the log is open.
        let mut map = unsafe { MmapMut::map_mut(&file)? };
        map[..8].copy_from_slice(MAGIC);
        map[CAP_AT..CAP_AT + 8].copy_from_slice(&(cap as u64).to_le_bytes());
        let mut wal = Wal {
            map,
            cap: cap as u64,
            head: 0,
            filed: 0,
        };
        wal.store(HEAD_AT, 0);
        wal.store(FILED_AT, 0);
        Ok(wal)
    }

    /// Copies `bytes` in after the last copy; false (nothing copied) if they do not fit in the
    /// space not yet filed.
    pub fn append(&mut self, bytes: &[u8]) -> bool {
        let len = bytes.len() as u64;
        if len > self.cap - (self.head - self.filed) {
            return false;
        }
        let start = (self.head % self.cap) as usize;
        let first = bytes.len().min(self.cap as usize - start);
        let data = &mut self.map[HEADER..];
        data[start..start + first].copy_from_slice(&bytes[..first]);
        data[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        self.head += len;
        // after the bytes: a kill between the two leaves the record out, and its appender
        // has not returned yet
        self.store(HEAD_AT, self.head);
        true
    }

    /// Where the next copy goes (everything copied so far lies before it).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Everything copied before `pos` is in a segment file: its space can be reused.
    pub fn filed(&mut self, pos: u64) {
        if pos > self.filed {
            self.filed = pos.min(self.head);
            self.store(FILED_AT, self.filed);
        }
    }

    fn store(&mut self, at: usize, v: u64) {
        self.map[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// The whole records of `bytes` (what [`Wal::leftover`] read) that continue a chain whose next
/// record is `next_seq` after `prev`, with their times: records already in the chain (lower
/// seqs) are passed over, and the first record that does not continue it ends the list (a
/// host crash can leave anything after it).
pub fn continuing(
    bytes: &[u8],
    mut next_seq: u64,
    mut prev: Hash,
) -> Vec<(&[u8], Record, SystemTime)> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    lines.pop(); // bytes after the last newline: not a whole record
    let mut out = Vec::new();
    for line in lines {
        let Ok(r) = Record::parse_line(line) else {
            break;
        };
        if r.seq < next_seq {
            continue;
        }
        let Some(time) = time::parse(&r.time) else {
            break;
        };
        if r.seq != next_seq || r.prev != prev {
            break;
        }
        (next_seq, prev) = (r.seq + 1, r.hash);
        out.push((line, r, time));
    }
    out
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn allocate(file: &File, len: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor this function borrows.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match r {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_wrap_around_and_leftover_reads_them_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), 16).unwrap();
        assert!(wal.append(b"0123456789"));
        assert!(!wal.append(b"abcdefghij"), "only 6 bytes are free");
        wal.filed(8);
        assert!(wal.append(b"abcdefghij"), "wraps around the end");
        assert_eq!(wal.head(), 20);
        assert_eq!(
            Wal::leftover(dir.path()).unwrap().unwrap(),
            b"89abcdefghij".to_vec()
        );
        wal.filed(20);
        assert_eq!(Wal::leftover(dir.path()).unwrap().unwrap(), b"".to_vec());
        // never past what was copied, never backwards
        wal.filed(99);
        wal.filed(3);
        assert!(wal.append(&[b'x'; 16]), "all 16 bytes are free again");
        assert!(!wal.append(b"y"));
    }

    #[test]
    fn leftover_ignores_what_is_not_a_wal_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Wal::leftover(dir.path()).unwrap(), None, "no file");
        let path = dir.path().join(WAL_FILE);
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(Wal::leftover(dir.path()).unwrap(), None);
        let mut bytes = vec![0u8; HEADER + 16];
        bytes[..8].copy_from_slice(b"notawal!");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Wal::leftover(dir.path()).unwrap(), None, "wrong magic");
        // a header claiming more than the file holds, or filed past head
        let mut wal = Wal::create(dir.path(), 16).unwrap();
        wal.append(b"abc");
        drop(wal);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[CAP_AT..CAP_AT + 8].copy_from_slice(&1000u64.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Wal::leftover(dir.path()).unwrap(), None, "capacity");
        bytes[CAP_AT..CAP_AT + 8].copy_from_slice(&16u64.to_le_bytes());
        bytes[FILED_AT..FILED_AT + 8].copy_from_slice(&9u64.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Wal::leftover(dir.path()).unwrap(), None, "filed > head");
        bytes[FILED_AT..FILED_AT + 8].copy_from_slice(&0u64.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Wal::leftover(dir.path()).unwrap(), Some(b"abc".to_vec()));
    }
}
