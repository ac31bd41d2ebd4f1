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
    collections::HashMap,
    fs::{self, File, TryLockError},
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use super::{Recovered, Retention, Store, StoreError, event_kind, from_unix_ms, unix_ms};

mod files;

use crate::{
    model::audit::{AuditEntry, AuditEvent, Break, Digest, verify_chain},
    model::event::{Event, EventKind, Scope},
    model::task::{Decision, StoredKey, Task, TaskId},
};
pub use files::MARKER_FILE;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "hitl.sqlite3";
const LOCK_FILE: &str = "hitl.lock";

/// Schema versions, applied in order; the file's `user_version` says how many have run. Hand-made
/// rather than `rusqlite_migration`, which pins older rusqlite releases: this is a dozen lines.
const MIGRATIONS: &[&str] = &[
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
];

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
            let (version, id) = identity(&path)?;
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

/// Takes the directory's lock file, or says who holds it.
fn take_lock(dir: &Path) -> Result<File, StoreError> {
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

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
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

/// The schema version and store id of the database at `path`, read without writing anything
/// (no checkpoint, no recovery written back), so a refusal leaves every file as it was.
fn identity(path: &Path) -> Result<(i64, Option<i64>), StoreError> {
    let corrupt = |e: rusqlite::Error| StoreError::Corrupt {
        path: path.to_owned(),
        cause: e.to_string(),
    };
    let conn = open_read_only(path)?;
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
fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
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
fn store_id(conn: &Connection) -> Result<i64, StoreError> {
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

fn decode_task(seq: u64, body: &str) -> Result<Arc<Task>, StoreError> {
    super::decode_task(seq, body).map(Arc::new)
}

/// Every stored audit entry as text, by task, in chain order.
fn read_trails(conn: &Connection) -> Result<HashMap<TaskId, Vec<(u32, String)>>, StoreError> {
    let mut trails: HashMap<TaskId, Vec<(u32, String)>> = HashMap::new();
    let mut rows = conn.prepare("SELECT task_id, n, entry FROM audit ORDER BY task_id, n")?;
    for row in rows.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, u32>(1)?,
            row.get::<_, String>(2)?,
        ))
    })? {
        let (id, n, line) = row?;
        let id = id
            .parse()
            .map_err(|e| StoreError::Decode(format!("an audit entry's task id {id:?}: {e}")))?;
        trails.entry(id).or_default().push((n, line));
    }
    Ok(trails)
}

fn decode_entry(task: TaskId, n: u32, line: &str) -> Result<AuditEntry, StoreError> {
    serde_json::from_str(line)
        .map_err(|e| StoreError::Decode(format!("audit entry {n} of task {task}: {e}")))
}

/// One `events` row, as selected by [`EVENT_COLUMNS`].
fn decode_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Arc<Event>, StoreError>> {
    let seq: u64 = row.get(0)?;
    let kind: String = row.get(1)?;
    let at_ms: i64 = row.get(2)?;
    let attempt: Option<u32> = row.get(3)?;
    let text: Option<String> = row.get(4)?;
    let body: String = row.get(5)?;
    let task_seq: u64 = row.get(6)?;
    Ok((|| {
        Ok(Arc::new(Event {
            seq,
            at: from_unix_ms(seq, at_ms)?,
            kind: event_kind(seq, &kind, attempt, text.as_deref())?,
            task: decode_task(task_seq, &body)?,
            json: Default::default(),
        }))
    })())
}

const EVENT_COLUMNS: &str = "seq, kind, at_ms, attempt, text, task, task_seq";

/// The first sequence number still in the journal, if any.
fn first_kept(conn: &Connection) -> Result<Option<u64>, StoreError> {
    Ok(conn.query_row("SELECT MIN(seq) FROM events", [], |row| row.get(0))?)
}

fn head(conn: &Connection) -> Result<u64, StoreError> {
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'head'", [], |row| {
            row.get(0)
        })?,
    )
}

fn insert_events(tx: &Transaction<'_>, events: &[Arc<Event>]) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (seq, task_id, kind, at_ms, attempt, text, task, task_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut audit =
        tx.prepare_cached("INSERT INTO audit (task_id, n, entry) VALUES (?1, ?2, ?3)")?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO tasks (id, seq, status, body) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, status = excluded.status,
                                        body = excluded.body",
    )?;
    for event in events {
        let task = &event.task;
        let body = serde_json::to_string(&**task).map_err(|e| StoreError::Decode(e.to_string()))?;
        let (attempt, text) = match &event.kind {
            EventKind::Status => (None, None),
            EventKind::Progress { attempt, text } => (Some(*attempt), Some(&**text)),
        };
        insert.execute(params![
            event.seq,
            task.id.to_string(),
            event.name(),
            unix_ms(event.at),
            attempt,
            text,
            body,
            task.seq,
        ])?;
        if event.kind == EventKind::Status {
            upsert.execute(params![
                task.id.to_string(),
                task.seq,
                task.status.as_str(),
                body
            ])?;
            // The entries this change added are the newest ones, carried by this event.
            let fresh = task.history.iter().rev().take_while(|e| e.seq == event.seq);
            for entry in fresh {
                audit.execute(params![task.id.to_string(), entry.n, entry.to_line()])?;
            }
            // The key that made the task, with the event that made it.
            if let Some(key) = &task.submit_key
                && task.history.first().is_some_and(|e| e.seq == event.seq)
            {
                tx.prepare_cached(
                    // A key past its day but not yet pruned is taken over; a live one never
                    // is (the look-up before the submission found none).
                    "INSERT INTO submit_keys (owner, key, scope, task_id, digest, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (owner, key, scope) DO UPDATE
                         SET task_id = excluded.task_id, digest = excluded.digest,
                             at_ms = excluded.at_ms
                         WHERE submit_keys.at_ms < ?7",
                )?
                .execute(params![
                    &*key.owner,
                    &*key.key,
                    &*key.scope,
                    task.id.to_string(),
                    &*key.digest,
                    unix_ms(event.at),
                    super::oldest_key_ms(),
                ])?;
            }
        }
    }
    Ok(())
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

    fn append(&self, events: &[Arc<Event>]) -> Result<(), StoreError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        insert_events(&tx, events)?;
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'head'", [last.seq])?;
        tx.commit()?;
        Ok(())
    }

    fn task(&self, id: TaskId) -> Result<Option<Arc<Task>>, StoreError> {
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

    fn events_between(
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

/// What `hitl verify` found.
#[derive(Debug, Default)]
pub struct Verification {
    pub tasks: usize,
    pub entries: usize,
    pub breaks: Vec<Break>,
    /// Tasks written before the audit trail existed, which have none to check.
    pub without_trail: usize,
}

/// Checks every task's audit trail in the store at `dir`, and that each task's stored texts are
/// the ones its trail recorded. Reads only; works beside a running hitl.
pub fn verify(dir: &Path) -> Result<Verification, StoreError> {
    let path = dir.join(DB_FILE);
    if !path.exists() {
        return Err(StoreError::Config(format!(
            "there is no hitl database at {}",
            path.display()
        )));
    }
    // The same checks as a start: a directory hitl would refuse is reported damaged, never
    // "intact" because SQLite showed an empty store.
    let marker = files::inspect(dir)?;
    let (version, id) = identity(&path)?;
    files::check_marker(dir, marker, version, id)?;
    let conn = open_read_only(&path)?;
    if version < 2 {
        return Err(StoreError::Config(format!(
            "the database {} has no audit trail yet (schema version {version}); start this hitl on it once to add one",
            path.display()
        )));
    }
    // One read transaction: a commit by a running hitl between reading the trails and the
    // tasks would otherwise look like a task ahead of its trail.
    let conn = conn.unchecked_transaction()?;
    let mut trails = read_trails(&conn)?;
    let mut report = Verification::default();
    let mut rows = conn.prepare("SELECT id, seq, body FROM tasks ORDER BY id")?;
    let tasks = rows.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, u64>(1)?,
            row.get::<_, String>(2)?,
        ))
    })?;
    for row in tasks {
        let (id, seq, body) = row?;
        report.tasks += 1;
        let Ok(id) = id.parse::<TaskId>() else {
            report.breaks.push(Break {
                task_id: TaskId(uuid::Uuid::nil()),
                n: 0,
                problem: format!("a task row has the id {id:?}, which is not a task id"),
            });
            continue;
        };
        let trail = trails.remove(&id).unwrap_or_default();
        report.entries += trail.len();
        if trail.is_empty() {
            report.without_trail += 1;
            continue;
        }
        let mut entries = Vec::with_capacity(trail.len());
        for (n, line) in &trail {
            match serde_json::from_str::<AuditEntry>(line) {
                Ok(entry) if entry.n == *n => entries.push(entry),
                Ok(entry) => report.breaks.push(Break {
                    task_id: id,
                    n: *n,
                    problem: format!("the row for entry {n} holds entry {}", entry.n),
                }),
                Err(e) => report.breaks.push(Break {
                    task_id: id,
                    n: *n,
                    problem: format!("it is not a readable entry ({e})"),
                }),
            }
        }
        report.breaks.extend(verify_chain(id, &entries));
        match decode_task(seq, &body) {
            Ok(task) => report.breaks.extend(check_task(&task, &entries)),
            Err(e) => report.breaks.push(Break {
                task_id: id,
                n: 0,
                problem: format!("the task's row cannot be read: {e}"),
            }),
        }
    }
    for (id, trail) in trails {
        report.entries += trail.len();
        report.breaks.push(Break {
            task_id: id,
            n: trail.first().map_or(0, |(n, _)| *n),
            problem: "its task is missing from the tasks table".into(),
        });
    }
    Ok(report)
}

/// Does the task as stored say what its trail recorded: the same input, outputs, result and
/// status?
fn check_task(task: &Task, entries: &[AuditEntry]) -> Vec<Break> {
    let mut breaks = Vec::new();
    let mut problem = |n: u32, problem: String| {
        breaks.push(Break {
            task_id: task.id,
            n,
            problem,
        })
    };
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return breaks;
    };
    // A task already under way when the trail was added (schema version 2) has a trail that
    // starts part-way: only what happened after its start can be checked.
    let whole = matches!(first.event, AuditEvent::Submitted { .. });
    if last.status != task.status {
        problem(
            last.n,
            format!(
                "the task is stored as {} but its trail ends with it {}",
                task.status.as_str(),
                last.status.as_str()
            ),
        );
    }
    let finished = |attempt: u32| {
        entries.iter().rev().find_map(|e| match &e.event {
            AuditEvent::AttemptFinished {
                attempt: a,
                output_sha256,
                ..
            } if *a == attempt => Some((e.n, *output_sha256)),
            _ => None,
        })
    };
    for entry in entries {
        match &entry.event {
            AuditEvent::Submitted { input_sha256, .. }
                if *input_sha256 != Digest::of_text(&task.input) =>
            {
                problem(entry.n, "the task's input is not the one submitted".into());
            }
            AuditEvent::Decided {
                decision: Decision::Approved,
                result_sha256: Some(result),
                ..
            } if task.final_result.as_deref().map(Digest::of_text) != Some(*result) => {
                problem(
                    entry.n,
                    "the task's final result is not the text that was approved".into(),
                );
            }
            _ => {}
        }
    }
    for record in &task.attempts {
        match finished(record.attempt) {
            Some((n, hash)) if hash != Digest::of_text(&record.output) => problem(
                n,
                format!(
                    "the stored output of attempt {} is not the one the processor produced",
                    record.attempt
                ),
            ),
            None if whole => problem(
                last.n,
                format!("attempt {} has no finished entry", record.attempt),
            ),
            _ => {}
        }
    }
    if let Some(output) = &task.output
        && let Some((n, hash)) = finished(task.attempt)
        && hash != Digest::of_text(output)
    {
        problem(
            n,
            "the output under review is not the one the processor produced".into(),
        );
    }
    breaks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::task::{TaskId, TaskStatus, now};

    fn status_event(seq: u64, task: &Task, status: TaskStatus, at: OffsetDateTime) -> Arc<Event> {
        Arc::new(Event {
            seq,
            at,
            kind: EventKind::Status,
            task: Arc::new(Task {
                seq,
                status,
                updated_at: at,
                ..task.clone()
            }),
            json: Default::default(),
        })
    }

    fn seqs(events: &[Arc<Event>]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    /// Five events: a's pending, running, a progress report, waiting; then b's pending.
    fn journal(store: &SqliteStore) -> (Task, Task) {
        let a = Task::new(TaskId::new(), "first".into(), 3, now());
        let b = Task::new(TaskId::new(), "second".into(), 3, now());
        let running = status_event(2, &a, TaskStatus::Running, now());
        let progress = Arc::new(Event {
            seq: 3,
            at: now(),
            kind: EventKind::Progress {
                attempt: 1,
                text: "half way".into(),
            },
            task: running.task.clone(),
            json: Default::default(),
        });
        store
            .append(&[
                status_event(1, &a, TaskStatus::Pending, now()),
                running,
                progress,
            ])
            .unwrap();
        store
            .append(&[
                status_event(4, &a, TaskStatus::WaitingForReview, now()),
                status_event(5, &b, TaskStatus::Pending, now()),
            ])
            .unwrap();
        (a, b)
    }

    #[test]
    fn an_empty_directory_gets_the_current_schema_and_no_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("new")).unwrap();
        let version: i64 = store
            .reader()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let recovered = store.load(100).unwrap();
        assert!(recovered.tasks.is_empty() && recovered.recent.is_empty());
        assert_eq!(recovered.head, 0);
    }

    #[test]
    fn what_was_appended_is_rebuilt_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = journal(&SqliteStore::open(dir.path()).unwrap());

        let store = SqliteStore::open(dir.path()).unwrap();
        let recovered = store.load(100).unwrap();
        assert_eq!(recovered.head, 5);
        assert_eq!(seqs(&recovered.recent), vec![1, 2, 3, 4, 5]);
        assert_eq!(
            recovered.recent[2].kind,
            EventKind::Progress {
                attempt: 1,
                text: "half way".into()
            }
        );
        assert_eq!(
            recovered.recent[2].task.seq, 2,
            "progress keeps its task's state"
        );
        let mut tasks: Vec<_> = recovered
            .tasks
            .iter()
            .map(|t| (t.id, t.status, t.seq, t.input.to_string()))
            .collect();
        tasks.sort_by_key(|t| t.2);
        assert_eq!(
            tasks,
            vec![
                (a.id, TaskStatus::WaitingForReview, 4, "first".into()),
                (b.id, TaskStatus::Pending, 5, "second".into()),
            ]
        );
        assert_eq!(seqs(&store.load(2).unwrap().recent), vec![4, 5]);
    }

    #[test]
    fn count_retention_keeps_the_newest_and_reads_know_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (a, _) = journal(&store);
        assert_eq!(store.prune(Retention::Count(2)).unwrap(), 3);

        let kept = store.events_between(3, 5, Scope::All).unwrap();
        assert_eq!(kept.as_deref().map(seqs), Some(vec![4, 5]));
        let only_a = store.events_between(3, 5, Scope::Task(a.id)).unwrap();
        assert_eq!(only_a.as_deref().map(seqs), Some(vec![4]));
        assert!(
            store.events_between(2, 5, Scope::All).unwrap().is_none(),
            "3 is gone"
        );
        assert_eq!(
            store.load(100).unwrap().tasks.len(),
            2,
            "tasks are never pruned"
        );
        assert_eq!(store.load(100).unwrap().head, 5);
    }

    #[test]
    fn age_retention_drops_events_older_than_the_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let task = Task::new(TaskId::new(), "old".into(), 3, now());
        let long_ago = now() - Duration::from_secs(7200);
        store
            .append(&[
                status_event(1, &task, TaskStatus::Pending, long_ago),
                status_event(2, &task, TaskStatus::Running, long_ago),
                status_event(3, &task, TaskStatus::WaitingForReview, now()),
            ])
            .unwrap();
        let hour = Retention::Age(Duration::from_secs(3600));
        assert_eq!(store.prune(hour).unwrap(), 2);
        assert_eq!(seqs(&store.load(100).unwrap().recent), vec![3]);
        assert_eq!(store.prune(hour).unwrap(), 0);
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SqliteStore::open(dir.path()).unwrap();
        let error = SqliteStore::open(dir.path()).err().expect("refused");
        let message = error.to_string();
        assert!(matches!(error, StoreError::Locked { .. }), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        SqliteStore::open(dir.path()).expect("free again once the first is gone");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_not_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = "this is not a database, it is a shopping list\n".repeat(200);
        std::fs::write(dir.path().join(DB_FILE), &garbage).unwrap();
        let error = SqliteStore::open(dir.path()).err().expect("refused");
        assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
        assert!(
            error.to_string().contains("move the data directory aside"),
            "{error}"
        );
        let after = std::fs::read_to_string(dir.path().join(DB_FILE)).unwrap();
        assert_eq!(after, garbage, "the file is left as it was");
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let error = SqliteStore::open(dir.path()).err().expect("refused");
        assert!(
            matches!(error, StoreError::TooNew { found: 99, .. }),
            "{error}"
        );
    }

    #[test]
    fn a_directory_gets_a_marker_naming_its_database_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let marker = std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap();
        assert!(marker.contains("\nstore "), "{marker}");
        // A directory from before markers (or a crash before its marker was written) gets one
        // at its next start, naming the same database.
        std::fs::remove_file(dir.path().join(MARKER_FILE)).unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let again = std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap();
        assert_eq!(again, marker, "the same store id");
    }

    #[test]
    fn another_stores_database_or_one_without_tables_is_refused_with_the_marker_named() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = SqliteStore::open(ours.path()).unwrap();
        journal(&store);
        drop(store);
        drop(SqliteStore::open(theirs.path()).unwrap());
        std::fs::copy(theirs.path().join(DB_FILE), ours.path().join(DB_FILE)).unwrap();
        for beside in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(ours.path().join(format!("{DB_FILE}{beside}")));
        }
        let error = SqliteStore::open(ours.path()).err().expect("refused");
        assert!(matches!(error, StoreError::Damaged { .. }), "{error}");
        assert!(
            error
                .to_string()
                .contains("not the database this directory was created with"),
            "{error}"
        );
        for beside in ["-wal", "-shm"] {
            let path = ours.path().join(format!("{DB_FILE}{beside}"));
            assert!(!path.exists(), "the refusal made no {beside} file");
        }

        // A database SQLite reads as new (every change lost) while the marker says data was
        // here: refused, and no schema is migrated into it.
        let fresh = Connection::open(ours.path().join(DB_FILE).with_extension("new")).unwrap();
        fresh.pragma_update(None, "journal_mode", "WAL").unwrap();
        drop(fresh);
        std::fs::rename(
            ours.path().join(DB_FILE).with_extension("new"),
            ours.path().join(DB_FILE),
        )
        .unwrap();
        let error = SqliteStore::open(ours.path()).err().expect("refused");
        assert!(
            error.to_string().contains("holds no hitl tables"),
            "{error}"
        );
        let version: i64 = Connection::open(ours.path().join(DB_FILE))
            .unwrap()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, 0, "nothing migrated");
    }
}
