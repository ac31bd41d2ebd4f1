//! What the data directory's files say before SQLite opens them.
//!
//! SQLite treats a write-ahead log it cannot read (a damaged header, garbage) as empty, and a
//! main file of zero bytes as a new database: it would open either as an empty store, hitl would
//! migrate a fresh schema into it, and the next checkpoint would write over what was left. After
//! a `kill -9` every acknowledged change can be in the WAL alone, so that is real data lost. So
//! the files are read here first, by hand (SQLite has no call that reports "I am ignoring your
//! WAL"), following the file formats at <https://www.sqlite.org/fileformat2.html>.
//!
//! A marker file beside the database ([`MARKER_FILE`]) holds the store's id, which the database
//! holds too: once a directory has held hitl's data, a database without that id (empty, replaced,
//! or whose data SQLite could not read) is refused instead of started afresh.

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    path::Path,
};

use super::DB_FILE;
use crate::store::StoreError;

/// The marker's name inside the data directory.
pub const MARKER_FILE: &str = "hitl.store";
/// The write-ahead log's name inside the data directory.
pub(super) fn wal_file() -> String {
    format!("{DB_FILE}-wal")
}

const DB_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const DB_HEADER_LEN: u64 = 100;
const WAL_HEADER_LEN: usize = 32;
/// The WAL format version every SQLite since 3.7.0 writes.
const WAL_VERSION: u32 = 3_007_000;

/// A file in the data directory that hitl will not start on.
pub fn damaged(path: &Path, found: impl Into<String>) -> StoreError {
    StoreError::Damaged {
        path: path.to_owned(),
        found: found.into(),
    }
}

/// Checks the database and its write-ahead log in `dir` as files, before SQLite reads them, and
/// returns the store id the marker holds (`None`: no marker, a directory that never finished its
/// first start, or one from before markers).
pub fn inspect(dir: &Path) -> Result<Option<i64>, StoreError> {
    let db = dir.join(DB_FILE);
    let wal = dir.join(wal_file());
    let marker = read_marker(dir)?;
    let db_len = len(&db)?;
    let wal_len = len(&wal)?;
    if let Some(wal_len) = wal_len.filter(|len| *len > 0) {
        check_wal(&wal, wal_len)?;
        if db_len.unwrap_or(0) < DB_HEADER_LEN {
            return Err(damaged(
                &db,
                format!(
                    "it is {} while its write-ahead log {} holds {wal_len} bytes of changes",
                    describe_len(db_len),
                    wal.display()
                ),
            ));
        }
    }
    match db_len {
        Some(db_len) if db_len > 0 => check_db(&db, db_len)?,
        _ => {
            if marker.is_some() {
                return Err(damaged(
                    &db,
                    format!(
                        "it is {}, but {} says this directory held a hitl database",
                        describe_len(db_len),
                        dir.join(MARKER_FILE).display()
                    ),
                ));
            }
        }
    }
    Ok(marker)
}

/// Is the database the one the marker names? `found` is the schema version and the store id
/// the database holds.
pub fn check_marker(
    dir: &Path,
    marker: Option<i64>,
    version: i64,
    found: Option<i64>,
) -> Result<(), StoreError> {
    let Some(expected) = marker else {
        return Ok(());
    };
    let db = dir.join(DB_FILE);
    let marker = dir.join(MARKER_FILE);
    if version == 0 {
        return Err(damaged(
            &db,
            format!(
                "it holds no hitl tables, but {} says this directory held a hitl database (its data is gone, or in a file SQLite could not read)",
                marker.display()
            ),
        ));
    }
    if found != Some(expected) {
        return Err(damaged(
            &db,
            format!(
                "it is not the database this directory was created with ({} names store {expected:x}, the database {}); if you restored another store's database here on purpose, delete {} and start again",
                marker.display(),
                found.map_or_else(|| "none".to_owned(), |id| format!("{id:x}")),
                marker.display()
            ),
        ));
    }
    Ok(())
}

/// Writes the marker once the database holding `id` is committed, so a crash before it leaves a
/// directory that starts as new, never one refused.
pub fn write_marker(dir: &Path, id: i64) -> Result<(), StoreError> {
    let path = dir.join(MARKER_FILE);
    let temporary = dir.join(format!("{MARKER_FILE}.tmp"));
    let io_error = |source| StoreError::DataDir {
        path: dir.to_owned(),
        source,
    };
    let mut file = File::create(&temporary).map_err(io_error)?;
    write!(
        file,
        "# hitl checks at start-up that {DB_FILE} is the database this directory was created with.\n\
         # Keep this file with the database (in backups too).\n\
         store {id:x}\n"
    )
    .and_then(|()| file.sync_all())
    .map_err(io_error)?;
    fs::rename(&temporary, &path).map_err(io_error)?;
    // The rename is durable once the directory is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error)?;
    Ok(())
}

fn read_marker(dir: &Path) -> Result<Option<i64>, StoreError> {
    let path = dir.join(MARKER_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(damaged(&path, format!("it cannot be read ({e})"))),
    };
    text.lines()
        .find_map(|line| line.strip_prefix("store "))
        .and_then(|id| u64::from_str_radix(id.trim(), 16).ok())
        .map(|id| Some(id as i64))
        .ok_or_else(|| damaged(&path, "it names no store id"))
}

fn len(path: &Path) -> Result<Option<u64>, StoreError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(damaged(path, format!("it cannot be read ({e})"))),
    }
}

fn describe_len(len: Option<u64>) -> String {
    match len {
        None => "missing".into(),
        Some(0) => "empty (0 bytes)".into(),
        Some(n) => format!("only {n} bytes long, shorter than a database header"),
    }
}

fn read_start(path: &Path, buf: &mut [u8]) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|mut file| file.read_exact(buf))
        .map_err(|e| damaged(path, format!("its header cannot be read ({e})")))
}

fn check_db(path: &Path, len: u64) -> Result<(), StoreError> {
    if len < DB_HEADER_LEN {
        return Err(damaged(path, describe_len(Some(len))));
    }
    let mut header = [0u8; 16];
    read_start(path, &mut header)?;
    if &header != DB_MAGIC {
        return Err(damaged(path, "it does not start like an SQLite database"));
    }
    Ok(())
}

/// The header of a write-ahead log: magic, version, page size, and the checksum over the first
/// 24 bytes. SQLite ignores a log whose header fails these, with every change in it.
fn check_wal(path: &Path, len: u64) -> Result<(), StoreError> {
    if len < WAL_HEADER_LEN as u64 {
        return Err(damaged(
            path,
            format!("it is {len} bytes long, shorter than a write-ahead log's header"),
        ));
    }
    let mut header = [0u8; WAL_HEADER_LEN];
    read_start(path, &mut header)?;
    let word = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let magic = word(0);
    let big_endian = match magic {
        0x377f_0682 => false,
        0x377f_0683 => true,
        _ => {
            return Err(damaged(
                path,
                "it does not start like an SQLite write-ahead log",
            ));
        }
    };
    if word(4) != WAL_VERSION {
        return Err(damaged(
            path,
            format!("its header names format version {}", word(4)),
        ));
    }
    let page = word(8);
    if !(page == 65_536 || (512..=32_768).contains(&page) && page.is_power_of_two()) {
        return Err(damaged(path, format!("its header names page size {page}")));
    }
    if wal_checksum(&header[..24], big_endian) != (word(24), word(28)) {
        return Err(damaged(
            path,
            "its header's checksum does not match the header, so SQLite would ignore every change in it",
        ));
    }
    Ok(())
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), from a zero start.
fn wal_checksum(data: &[u8], big_endian: bool) -> (u32, u32) {
    let (mut s0, mut s1) = (0u32, 0u32);
    for pair in data.chunks_exact(8) {
        let read = |bytes: &[u8]| {
            let bytes: [u8; 4] = bytes.try_into().expect("4 bytes");
            if big_endian {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            }
        };
        s0 = s0.wrapping_add(read(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(read(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}
