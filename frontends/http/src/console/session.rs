//! The console's sessions: made by a successful sign-in (the engine's, whatever its
//! factors), kept in memory on the server and named by a cookie.
//!
//! Only the SHA-256 of a session's secret is kept, compared in constant time, so that
//! a memory dump or a timing probe gives no usable cookie. A session ends at its
//! idle timeout, at its absolute timeout, at sign-out, when its user's password
//! changes (by any door: the session remembers a fingerprint of the password hash it
//! was made under), and when its user is deactivated or expires. A restart ends every
//! session: users sign in again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portcullis_engine::Id;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The console's session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after its sign-in, however busy.
    pub absolute_timeout: Duration,
    /// Cookies carry `Secure` (set when the server serves TLS).
    pub secure_cookies: bool,
    /// The most sessions kept at once; past it, the oldest is ended.
    pub max_sessions: usize,
}

impl Default for ConsoleSettings {
    fn default() -> ConsoleSettings {
        ConsoleSettings {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            secure_cookies: false,
            max_sessions: 100_000,
        }
    }
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) user: Id,
    /// The synchronizer token every state change of this session must carry.
    pub(crate) csrf: String,
    /// The session's key, to end it at sign-out.
    key: [u8; 32],
}

struct Entry {
    hash: [u8; 32],
    user: Id,
    csrf: String,
    password: Option<[u8; 32]>,
    created: Instant,
    last_seen: Instant,
}

/// Every live session, by the hash of its secret.
pub(crate) struct Sessions {
    settings: ConsoleSettings,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

/// 32 random bytes in hex.
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("INVARIANT: the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Sessions {
    pub(crate) fn new(settings: ConsoleSettings) -> Sessions {
        Sessions {
            settings,
            entries: Mutex::default(),
        }
    }

    pub(crate) fn settings(&self) -> &ConsoleSettings {
        &self.settings
    }

    /// A new session for `user`, whose password hash has the fingerprint `password`:
    /// its secret (the cookie's value, shown this once).
    pub(crate) fn open(&self, user: Id, password: Option<[u8; 32]>) -> String {
        let secret = random_secret();
        let now = Instant::now();
        let key = hash(&secret);
        let mut entries = self.entries.lock().expect("session lock");
        if entries.len() >= self.settings.max_sessions {
            entries.retain(|_, entry| self.live(entry, now));
            if entries.len() >= self.settings.max_sessions {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.created)
                    .map(|(key, _)| *key);
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                hash: key,
                user,
                csrf: random_secret(),
                password,
                created: now,
                last_seen: now,
            },
        );
        secret
    }

    fn live(&self, entry: &Entry, now: Instant) -> bool {
        now.duration_since(entry.last_seen) < self.settings.idle_timeout
            && now.duration_since(entry.created) < self.settings.absolute_timeout
    }

    /// The session whose secret is `secret`, if it is live and was made under the
    /// password whose fingerprint `password` gives for its user now; a use that
    /// finds it live keeps it from idling out. A session found dead is ended.
    pub(crate) fn find(
        &self,
        secret: &str,
        password: impl FnOnce(Id) -> Option<[u8; 32]>,
    ) -> Option<Session> {
        let key = hash(secret);
        // The fingerprint reads the store: not under the lock every request takes.
        let user = self.entries.lock().expect("session lock").get(&key)?.user;
        let current = password(user);
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("session lock");
        let entry = entries.get_mut(&key)?;
        let matches: bool = entry.hash.ct_eq(&key).into();
        let same_password = entry.user == user && entry.password == current;
        if !matches || !same_password || !self.live(entry, now) {
            entries.remove(&key);
            return None;
        }
        entry.last_seen = now;
        Some(Session {
            user: entry.user,
            csrf: entry.csrf.clone(),
            key,
        })
    }

    /// Ends `session` (sign-out).
    pub(crate) fn close(&self, session: &Session) {
        self.entries
            .lock()
            .expect("session lock")
            .remove(&session.key);
    }

    /// Ends every session of `user` (a password change made in the console).
    pub(crate) fn close_all(&self, user: Id) {
        self.entries
            .lock()
            .expect("session lock")
            .retain(|_, entry| entry.user != user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(idle: Duration) -> Sessions {
        Sessions::new(ConsoleSettings {
            idle_timeout: idle,
            max_sessions: 2,
            ..ConsoleSettings::default()
        })
    }

    #[test]
    fn a_session_is_found_by_its_secret_only() {
        let sessions = sessions(Duration::from_secs(60));
        let user = Id::random();
        let secret = sessions.open(user, Some([1; 32]));
        let found = sessions.find(&secret, |_| Some([1; 32])).expect("live");
        assert_eq!(found.user, user);
        assert_eq!(found.csrf.len(), 64);
        assert!(sessions.find("not-the-secret", |_| Some([1; 32])).is_none());
        sessions.close(&found);
        assert!(sessions.find(&secret, |_| Some([1; 32])).is_none());
    }

    #[test]
    fn a_password_change_ends_the_session() {
        let sessions = sessions(Duration::from_secs(60));
        let secret = sessions.open(Id::random(), Some([1; 32]));
        assert!(sessions.find(&secret, |_| Some([2; 32])).is_none());
        // Ended for good, even under the old password.
        assert!(sessions.find(&secret, |_| Some([1; 32])).is_none());
    }

    #[test]
    fn an_idle_session_ends() {
        let sessions = sessions(Duration::from_millis(30));
        let secret = sessions.open(Id::random(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.find(&secret, |_| None).is_none());
    }

    #[test]
    fn past_the_limit_the_oldest_session_ends() {
        let sessions = sessions(Duration::from_secs(60));
        let first = sessions.open(Id::random(), None);
        let second = sessions.open(Id::random(), None);
        let third = sessions.open(Id::random(), None);
        assert!(sessions.find(&first, |_| None).is_none());
        assert!(sessions.find(&second, |_| None).is_some());
        assert!(sessions.find(&third, |_| None).is_some());
    }
}
