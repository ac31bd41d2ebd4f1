//! The embedded store: one SQLite file under the data directory, in WAL mode with
//! `synchronous = FULL`, so a committed transaction survives a crash or a power cut.
//!
//! Four tables: `tasks` holds each task's current state, `events` the journal (pruned by
//! `--retain-events`), `audit` each task's hash-chained trail (never pruned), `submit_keys` the
//! submission keys of the last day with the task each made. All change in the same
//! transaction, so the journal, the trail, the keys and the state can never disagree. A lock
//! file keeps a second hitl off the same directory (SQLite would let it in and the two would
//! fight over sequence numbers); before SQLite reads anything, [`files`] checks the database,
//! its write-ahead log and the directory's marker, so a log SQLite would ignore is refused, not
//! started over.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::{Recovered, Retention, Store, StoreError, unix_ms};

mod files;
mod outbox;
mod rows;
mod schema;
mod verify;

pub use verify::{Verification, verify};
use {rows::*, schema::*};

use crate::{
    model::delivery::{NewDelivery, OutboxWrite},
    model::event::{Event, Scope},
    model::task::{StoredKey, Task, TaskId},
};
pub use files::MARKER_FILE;
pub use outbox::SqliteOutbox;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "hitl.sqlite3";
const LOCK_FILE: &str = "hitl.lock";

pub struct SqliteStore {
    path: PathBuf,
    /// Used by the journal thread alone; the mutex only satisfies `Sync`.
    writer: Mutex<Connection>,
    /// Replays and health checks read here, beside the writer (WAL lets them).
    reader: Mutex<Connection>,
    /// Held until [`Store::release`] or the end of the store: the data directory is ours.
    lock: Mutex<Option<File>>,
}

impl SqliteStore {
    /// Opens (creating if need be) the store in `dir`, takes its lock and brings its schema up
    /// to date.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let dir_error = |source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(dir_error)?;
        let lock = take_lock(dir)?;
        let path = dir.join(DB_FILE);
        // Before SQLite touches anything: a write-ahead log it would ignore, or a database that
        // is not the one this directory held, stops the start with nothing changed.
        let marker = files::inspect(dir)?;
        if marker.is_some() {
            let (version, id) = identity(&open_read_only(&path)?, &path)?;
            files::check_marker(dir, marker, version, id)?;
        }
        let corrupt = |e: rusqlite::Error| StoreError::Corrupt {
            path: path.clone(),
            cause: e.to_string(),
        };
        let mut writer = Connection::open(&path).map_err(corrupt)?;
        // The first statement that reads the file is where a damaged or foreign one shows.
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(corrupt)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                path,
                cause: format!("it refuses WAL mode (journal mode {mode})"),
            });
        }
        configure(&writer)?;
        migrate(&mut writer, &path)?;
        let id = store_id(&writer)?;
        if marker.is_none() {
            files::write_marker(dir, id)?;
        }
        let reader = Connection::open(&path)?;
        configure(&reader)?;
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            lock: Mutex::new(Some(lock)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for SqliteStore {
    fn load(&self, recent: usize) -> Result<Recovered, StoreError> {
        let conn = self.reader();
        let mut trails = read_trails(&conn)?;
        let mut tasks = Vec::new();
        let mut rows = conn.prepare("SELECT seq, body FROM tasks")?;
        for row in rows.query_map([], |row| {
            Ok((row.get::<_, u64>(0)?, row.get::<_, String>(1)?))
        })? {
            let (seq, body) = row?;
            let mut task = decode_task(seq, &body)?;
            if let Some(trail) = trails.remove(&task.id) {
                let history = trail
                    .into_iter()
                    .map(|(n, line)| decode_entry(task.id, n, &line).map(Arc::new))
                    .collect::<Result<_, _>>()?;
                Arc::make_mut(&mut task).history = history;
            }
            tasks.push(task);
        }
        let mut recent: Vec<Arc<Event>> = conn
            .prepare(&format!(
                "SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?1"
            ))?
            .query_map([recent as i64], decode_event)?
            .map(|row| row.map_err(StoreError::from).and_then(|event| event))
            .collect::<Result<_, _>>()?;
        recent.reverse();
        Ok(Recovered {
            tasks,
            recent,
            head: head(&conn)?,
        })
    }

    fn append(
        &self,
        events: &[Arc<Event>],
        deliveries: &[NewDelivery],
        writes: &[OutboxWrite],
    ) -> Result<(), StoreError> {
        if events.is_empty() && writes.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        insert_events(&tx, events)?;
        outbox::insert(&tx, deliveries)?;
        outbox::apply(&tx, writes)?;
        if let Some(last) = events.last() {
            tx.execute("UPDATE meta SET value = ?1 WHERE key = 'head'", [last.seq])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn read_task(&self, id: TaskId) -> Result<Option<Arc<Task>>, StoreError> {
        let conn = self.reader();
        let key = id.to_string();
        let Some((seq, body)) = conn
            .prepare_cached("SELECT seq, body FROM tasks WHERE id = ?1")?
            .query_row([&key], |row| {
                Ok((row.get::<_, u64>(0)?, row.get::<_, String>(1)?))
            })
            .optional()?
        else {
            return Ok(None);
        };
        let mut task = decode_task(seq, &body)?;
        let history = conn
            .prepare_cached("SELECT n, entry FROM audit WHERE task_id = ?1 ORDER BY n")?
            .query_map([&key], |row| {
                Ok((row.get::<_, u32>(0)?, row.get::<_, String>(1)?))
            })?
            .map(|row| {
                let (n, line) = row?;
                decode_entry(id, n, &line).map(Arc::new)
            })
            .collect::<Result<_, _>>()?;
        Arc::make_mut(&mut task).history = history;
        Ok(Some(task))
    }

    fn read_events(
        &self,
        after: u64,
        upto: u64,
        scope: Scope,
    ) -> Result<Option<Vec<Arc<Event>>>, StoreError> {
        let conn = self.reader();
        if upto <= after {
            return Ok(Some(Vec::new()));
        }
        // Read the events first, then check nothing before them was pruned meanwhile: the
        // journal only ever loses its oldest events.
        let events: Vec<Arc<Event>> = match scope {
            Scope::All => conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE seq > ?1 AND seq <= ?2 ORDER BY seq"
                ))?
                .query_map(params![after, upto], decode_event)?
                .map(|row| row.map_err(StoreError::from).and_then(|event| event))
                .collect::<Result<_, _>>()?,
            Scope::Task(id) => conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE task_id = ?3 AND seq > ?1 AND seq <= ?2 ORDER BY seq"
                ))?
                .query_map(params![after, upto, id.to_string()], decode_event)?
                .map(|row| row.map_err(StoreError::from).and_then(|event| event))
                .collect::<Result<_, _>>()?,
        };
        match first_kept(&conn)? {
            Some(first) if first <= after + 1 => Ok(Some(events)),
            _ => Ok(None),
        }
    }

    fn prune(&self, retention: Retention) -> Result<u64, StoreError> {
        let conn = self.writer();
        let deleted = match retention {
            Retention::Count(keep) => {
                let head = head(&conn)?;
                conn.execute(
                    "DELETE FROM events WHERE seq <= ?1",
                    [head.saturating_sub(keep)],
                )?
            }
            // Always a prefix of the journal, even if the clock once went backwards.
            Retention::Age(age) => {
                let Some(cutoff) = age
                    .try_into()
                    .ok()
                    .and_then(|age| OffsetDateTime::now_utc().checked_sub(age))
                else {
                    return Ok(0);
                };
                let cutoff = unix_ms(cutoff);
                let last_old: Option<u64> = conn
                    .query_row(
                        "SELECT MAX(seq) FROM events WHERE at_ms < ?1",
                        [cutoff],
                        |row| row.get(0),
                    )
                    .optional()?
                    .flatten();
                match last_old {
                    Some(seq) => conn.execute("DELETE FROM events WHERE seq <= ?1", [seq])?,
                    None => 0,
                }
            }
        };
        conn.execute(
            "DELETE FROM submit_keys WHERE at_ms < ?1",
            [super::oldest_key_ms()],
        )?;
        outbox::prune(&conn)?;
        Ok(deleted as u64)
    }

    fn submit_key(&self, key: &StoredKey) -> Result<Option<(TaskId, Box<str>)>, StoreError> {
        let found: Option<(String, String)> = self
            .reader()
            .prepare_cached(
                "SELECT task_id, digest FROM submit_keys
                 WHERE owner = ?1 AND key = ?2 AND scope = ?3 AND at_ms >= ?4",
            )?
            .query_row(
                params![&*key.owner, &*key.key, &*key.scope, super::oldest_key_ms()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        found
            .map(|(id, digest)| {
                let id = id.parse().map_err(|e| {
                    StoreError::Decode(format!("a submission key's task id {id:?}: {e}"))
                })?;
                Ok((id, digest.into()))
            })
            .transpose()
    }

    fn check(&self) -> Result<(), StoreError> {
        self.reader()
            .query_row("SELECT value FROM meta WHERE key = 'head'", [], |_| Ok(()))?;
        Ok(())
    }

    fn release(&self) {
        // Closing the file drops its lock.
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

#[cfg(test)]
mod tests;
