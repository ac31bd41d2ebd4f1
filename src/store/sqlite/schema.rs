//! The database's shape and its opening: versioned migrations, the directory's lock file, the
//! connection settings, and the read-only look taken before anything is written.

use std::{
    fs::{self, File, TryLockError},
    io::{Read, Seek, Write},
    path::Path,
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension};

use super::{LOCK_FILE, files};
use crate::store::StoreError;

/// Schema versions, applied in order; the file's `user_version` says how many have run. Hand-made
/// rather than `rusqlite_migration`, which pins older rusqlite releases: this is a dozen lines.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: tasks and the journal.
    "CREATE TABLE tasks (
         id     TEXT PRIMARY KEY,
         seq    INTEGER NOT NULL,
         status TEXT NOT NULL,
         body   TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE events (
         seq     INTEGER PRIMARY KEY,
         task_id TEXT NOT NULL,
         kind    TEXT NOT NULL,
         at_ms   INTEGER NOT NULL,
         attempt INTEGER,
         text    TEXT,
         task    TEXT NOT NULL,
         task_seq INTEGER NOT NULL
     );
     CREATE INDEX events_task ON events (task_id, seq);
     CREATE TABLE meta (
         key   TEXT PRIMARY KEY,
         value INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO meta (key, value) VALUES ('head', 0);",
    // 2: the audit trail, one hash-chained entry per row, never pruned.
    "CREATE TABLE audit (
         task_id TEXT NOT NULL,
         n       INTEGER NOT NULL,
         entry   TEXT NOT NULL,
         PRIMARY KEY (task_id, n)
     ) WITHOUT ROWID;",
    // 3: submission keys, each written with the task it made (pruned after a day).
    "CREATE TABLE submit_keys (
         owner   TEXT NOT NULL,
         key     TEXT NOT NULL,
         scope   TEXT NOT NULL,
         task_id TEXT NOT NULL,
         digest  TEXT NOT NULL,
         at_ms   INTEGER NOT NULL,
         PRIMARY KEY (owner, key, scope)
     ) WITHOUT ROWID;
     CREATE INDEX submit_keys_at ON submit_keys (at_ms);",
    // 4: the outbox: deliveries, each written with the event that made it.
    "CREATE TABLE deliveries (
         id               TEXT PRIMARY KEY,
         task_id          TEXT NOT NULL,
         event_seq        INTEGER NOT NULL,
         kind             TEXT NOT NULL,
         url              TEXT NOT NULL,
         host             TEXT NOT NULL,
         chain            TEXT,
         body             TEXT NOT NULL,
         status           TEXT NOT NULL,
         attempts         INTEGER NOT NULL,
         last_status_code INTEGER,
         last_error       TEXT,
         created_ms       INTEGER NOT NULL,
         next_ms          INTEGER,
         done_ms          INTEGER,
         while_waiting    INTEGER,
         round            INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX deliveries_task ON deliveries (task_id, event_seq);
     CREATE INDEX deliveries_due ON deliveries (next_ms) WHERE status = 'pending';
     CREATE INDEX deliveries_chain ON deliveries (chain, task_id, event_seq)
         WHERE status = 'pending';
     CREATE INDEX deliveries_done ON deliveries (done_ms) WHERE status <> 'pending';",
];

/// Takes the directory's lock file, or says who holds it.
pub(super) fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => {
            // Whoever finds the lock taken can say which process holds it.
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = write!(file, "{}", std::process::id());
            Ok(file)
        }
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            Err(StoreError::Locked {
                path: dir.to_owned(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            })
        }
        Err(TryLockError::Error(source)) => Err(StoreError::DataDir {
            path: dir.to_owned(),
            source,
        }),
    }
}

pub(super) fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known,
        });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "database schema migrated");
    }
    Ok(())
}

/// The schema version and store id of the database at `path`, read through `conn` (opened
/// with [`open_read_only`], so a refusal leaves every file as it was).
pub(super) fn identity(conn: &Connection, path: &Path) -> Result<(i64, Option<i64>), StoreError> {
    let corrupt = |e: rusqlite::Error| StoreError::Corrupt {
        path: path.to_owned(),
        cause: e.to_string(),
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(corrupt)?;
    let id = if version >= 1 {
        conn.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |row| {
            row.get(0)
        })
        .optional()
        .map_err(corrupt)?
    } else {
        None
    };
    Ok((version, id))
}

/// A connection that only reads: no recovery written back, no checkpoint when it closes. With
/// no write-ahead log to read, the file is opened immutable, so SQLite does not even create an
/// empty log and its index beside it; with one, it builds the log's index (`-shm`, derived
/// from the log) and changes nothing else.
pub(super) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let corrupt = |e: rusqlite::Error| StoreError::Corrupt {
        path: path.to_owned(),
        cause: e.to_string(),
    };
    let wal = path.with_file_name(files::wal_file());
    let has_wal = fs::metadata(&wal).is_ok_and(|meta| meta.len() > 0);
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let conn = if has_wal {
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    } else {
        // A URI names the file: `%`, `?` and `#` in the path must be escaped.
        let escaped = path
            .to_string_lossy()
            .replace('%', "%25")
            .replace('?', "%3f")
            .replace('#', "%23");
        Connection::open_with_flags(format!("file:{escaped}?immutable=1"), flags)
    }
    .map_err(corrupt)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(corrupt)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// The store's id, made when it is first opened (databases from before it get one then too).
pub(super) fn store_id(conn: &Connection) -> Result<i64, StoreError> {
    // 63 of a v7 UUID's low, random bits: positive, and unlike any other store's.
    let fresh = (uuid::Uuid::now_v7().as_u128() as u64 >> 1) as i64;
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?1)",
        [fresh],
    )?;
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |row| {
            row.get(0)
        })?,
    )
}
