//! Who may act: users with a role, secrets checked with Argon2 (only hashes are ever kept),
//! browser sessions in signed `HttpOnly` cookies, and `Authorization: Bearer name:secret` for
//! scripts.
//!
//! Sessions live in memory: a restart signs everyone out, and signing out ends a session at once
//! (a signed cookie alone could not be taken back).

use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng, rand_core::RngCore},
};
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The cookie that carries a browser's session.
pub const SESSION_COOKIE: &str = "hitl_session";

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Submit tasks, cancel their own, watch.
    Submitter,
    /// All that, and decide on any task (but, by default, not on their own).
    Reviewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitter => "submitter",
            Self::Reviewer => "reviewer",
        }
    }
}

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub name: Arc<str>,
    pub role: Role,
    /// Nobody signed in (`--auth none`): anyone may do anything, and nothing names them.
    pub anonymous: bool,
}

impl Actor {
    pub fn anyone() -> Self {
        Self {
            name: "anyone".into(),
            role: Role::Reviewer,
            anonymous: true,
        }
    }

    /// The name recorded on what this actor does.
    pub fn recorded(&self) -> Option<Arc<str>> {
        (!self.anonymous).then(|| self.name.clone())
    }
}

/// A user as configured: a role and the Argon2 hash of their secret.
struct User {
    role: Role,
    hash: String,
}

/// The configured users, by name.
pub struct Users(HashMap<String, User>);

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("Users").field(&names).finish()
    }
}

impl FromStr for Users {
    type Err = String;

    /// `name:role:hash` entries separated by commas or new lines (`#` starts a comment line).
    /// An Argon2 hash has commas of its own, so an entry runs until the next `name:role:`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut entries: Vec<String> = Vec::new();
        for piece in spec
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .flat_map(|line| line.split(','))
        {
            let piece = piece.trim();
            let starts_entry = matches!(piece.split(':').nth(1), Some("reviewer" | "submitter"));
            match entries.last_mut() {
                Some(last) if !starts_entry => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => entries.push(piece.to_owned()),
            }
        }
        let mut users = HashMap::new();
        for entry in entries {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("{entry:?} is not name:role:hash"));
            };
            let role = match role {
                "reviewer" => Role::Reviewer,
                "submitter" => Role::Submitter,
                other => return Err(format!("{other:?} is not a role: reviewer or submitter")),
            };
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("{name:?} is not a user name (no spaces)"));
            }
            PasswordHash::new(hash).map_err(|e| {
                format!("the secret of {name} is not an Argon2 hash ({e}); make one with `hitl hash-secret`")
            })?;
            if users
                .insert(
                    name.to_owned(),
                    User {
                        role,
                        hash: hash.to_owned(),
                    },
                )
                .is_some()
            {
                return Err(format!("user {name} is given twice"));
            }
        }
        if users.is_empty() {
            return Err("no users are configured; give HITL_USERS or --users-file".into());
        }
        Ok(Self(users))
    }
}

/// An Argon2id hash of `secret` in PHC form, with the recommended parameters.
pub fn hash_secret(secret: &str) -> String {
    hash_with(&Argon2::default(), secret)
}

/// An Argon2id hash made with `argon2`'s parameters (tests use cheap ones).
pub fn hash_with(argon2: &Argon2<'_>, secret: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(secret.as_bytes(), &salt)
        .expect("Argon2 hashes any secret with a fresh salt")
        .to_string()
}

struct Session {
    actor: Actor,
    expires: Instant,
}

/// Sign-in, sessions and tokens for `--auth token`.
pub struct Auth {
    users: Users,
    /// Signs session cookies, so a made-up cookie is refused before any lookup.
    key: [u8; 32],
    sessions: DashMap<String, Session>,
    session_length: Duration,
    /// Bearer tokens already checked, by their SHA-256: Argon2 is slow on purpose, so it runs
    /// once per token, not once per request.
    tokens: DashMap<[u8; 32], Actor>,
    /// May a reviewer decide on a task they submitted?
    pub allow_self_review: bool,
    /// Argon2 is slow and memory-hungry on purpose: at most this many checks run at once, so a
    /// flood of wrong secrets queues instead of taking the machine.
    checks: tokio::sync::Semaphore,
    /// Checked when the name is unknown, so a wrong name takes as long as a wrong secret.
    decoy: String,
}

impl Auth {
    /// `key` signs cookies; without one, a random key (sessions then end with the process,
    /// which they do anyway).
    pub fn new(
        users: Users,
        key: Option<&str>,
        session_length: Duration,
        allow_self_review: bool,
    ) -> Self {
        let key = match key {
            Some(key) => Sha256::digest(key.as_bytes()).into(),
            None => {
                let mut key = [0; 32];
                OsRng.fill_bytes(&mut key);
                key
            }
        };
        Self {
            users,
            key,
            sessions: DashMap::new(),
            session_length,
            tokens: DashMap::new(),
            allow_self_review,
            checks: tokio::sync::Semaphore::new(2),
            decoy: hash_secret("no user has this secret"),
        }
    }

    /// [`Self::check`] on the blocking pool, at most two at a time.
    pub async fn check_off_thread(self: &Arc<Self>, name: String, secret: String) -> Option<Actor> {
        let _permit = self.checks.acquire().await.ok()?;
        let auth = self.clone();
        tokio::task::spawn_blocking(move || auth.check(&name, &secret))
            .await
            .ok()
            .flatten()
    }

    /// [`Self::bearer`] on the blocking pool when the token is new, at most two at a time.
    pub async fn bearer_checked(self: &Arc<Self>, token: String) -> Option<Actor> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(actor) = self.tokens.get(&digest) {
            return Some(actor.clone());
        }
        let _permit = self.checks.acquire().await.ok()?;
        let auth = self.clone();
        tokio::task::spawn_blocking(move || auth.bearer(&token))
            .await
            .ok()
            .flatten()
    }

    /// The user, if `secret` is theirs. Slow (Argon2): call it off the async threads.
    pub fn check(&self, name: &str, secret: &str) -> Option<Actor> {
        let Some(user) = self.users.0.get(name) else {
            if let Ok(decoy) = PasswordHash::new(&self.decoy) {
                let _ = Argon2::default().verify_password(secret.as_bytes(), &decoy);
            }
            return None;
        };
        let hash = PasswordHash::new(&user.hash).ok()?;
        Argon2::default()
            .verify_password(secret.as_bytes(), &hash)
            .ok()?;
        Some(Actor {
            name: name.into(),
            role: user.role,
            anonymous: false,
        })
    }

    /// The actor for `Authorization: Bearer name:secret`. Slow the first time for each token.
    pub fn bearer(&self, token: &str) -> Option<Actor> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(actor) = self.tokens.get(&digest) {
            return Some(actor.clone());
        }
        let (name, secret) = token.split_once(':')?;
        let actor = self.check(name, secret)?;
        self.tokens.insert(digest, actor.clone());
        Some(actor)
    }

    /// Starts a session; the answer is the cookie's value.
    pub fn start_session(&self, actor: Actor) -> String {
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        let id = hex(&id);
        let cookie = format!("{id}.{}", self.sign(&id));
        self.sessions.insert(
            id,
            Session {
                actor,
                expires: Instant::now() + self.session_length,
            },
        );
        cookie
    }

    /// The actor of a session cookie that is signed, known and not expired.
    pub fn session(&self, cookie: &str) -> Option<Actor> {
        let id = self.verified_id(cookie)?;
        let session = self.sessions.get(id)?;
        if session.expires <= Instant::now() {
            drop(session);
            self.sessions.remove(id);
            return None;
        }
        Some(session.actor.clone())
    }

    /// Ends a session: its cookie is worthless from now on.
    pub fn end_session(&self, cookie: &str) {
        if let Some(id) = self.verified_id(cookie) {
            self.sessions.remove(id);
        }
    }

    fn verified_id<'a>(&self, cookie: &'a str) -> Option<&'a str> {
        let (id, signature) = cookie.split_once('.')?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(id.as_bytes());
        let signature = unhex(signature)?;
        mac.verify_slice(&signature).ok()?;
        Some(id)
    }

    fn sign(&self, id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

// Hex by hand: two short functions for a cookie's id and signature do not earn a dependency.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests;
