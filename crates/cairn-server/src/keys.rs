//! Write keys and the admin token: who may send events, and who may read and administer.
//!
//! A **write key** names a *source* (web, ios, call-center, ...) and optionally the channel its
//! events default to. Keys live in `DATA_DIR/keys.json`, changed only by `cairn keys ...`
//! (read-modify-write under a file lock, replaced atomically). The running server re-reads the
//! file whenever its modification stamp changes, checked on every authenticated request (one
//! `stat`), so a key created or revoked from the command line takes effect at once.
//!
//! The **admin token** guards the read and admin endpoints (`Authorization: Bearer`). It comes
//! from the configuration, or is generated at first start and kept in `DATA_DIR/admin-token`
//! (mode 0600). Write keys never grant reading: a key shipped in a web page is public.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::ServerError;

pub const KEYS_FILE: &str = "keys.json";
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
const KEYS_LOCK: &str = "keys.lock";

/// One write key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteKey {
    pub key: String,
    pub source: String,
    /// The channel of this source's events when a message names none; `None`: derived from
    /// the message's context (user agent, library), as for imports.
    pub channel: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeysFile {
    keys: Vec<WriteKey>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `len` random bytes as hex, from the kernel's generator.
pub fn random_hex(len: usize) -> Result<String, ServerError> {
    use std::io::Read;
    let path = Path::new("/dev/urandom");
    let mut bytes = vec![0u8; len];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err(path))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn now_text() -> String {
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    cairn_model::format_micros(micros)
}

fn load(dir: &Path) -> Result<KeysFile, ServerError> {
    let path = dir.join(KEYS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ServerError::Config {
            path,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeysFile::default()),
        Err(e) => Err(ServerError::Io { path, source: e }),
    }
}

/// Writes `contents` to `path` atomically: a temporary file, fsynced, renamed over it.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err(parent))?;
    }
    Ok(())
}

/// Runs a read-modify-write of the keys file under an exclusive lock.
fn modify<T>(
    dir: &Path,
    change: impl FnOnce(&mut KeysFile) -> Result<T, ServerError>,
) -> Result<T, ServerError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let lock_path = dir.join(KEYS_LOCK);
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    let mut file = load(dir)?;
    let out = change(&mut file)?;
    let json = serde_json::to_vec_pretty(&file).map_err(|e| ServerError::Invalid(e.to_string()))?;
    write_atomically(&dir.join(KEYS_FILE), &json, 0o600)?;
    Ok(out)
}

/// Creates a write key for a source.
pub fn create_key(
    dir: &Path,
    source: &str,
    channel: Option<&str>,
) -> Result<WriteKey, ServerError> {
    let source = source.trim();
    if source.is_empty() {
        return Err(ServerError::Invalid(
            "the source name must not be empty".into(),
        ));
    }
    let key = WriteKey {
        key: format!("cwk_{}", random_hex(16)?),
        source: source.to_string(),
        channel: channel
            .map(cairn_model::channel::normalize_channel)
            .filter(|c| !c.is_empty()),
        created_at: now_text(),
        revoked_at: None,
    };
    modify(dir, |f| {
        f.keys.push(key.clone());
        Ok(())
    })?;
    Ok(key)
}

/// Every key, revoked ones included, oldest first.
pub fn list_keys(dir: &Path) -> Result<Vec<WriteKey>, ServerError> {
    Ok(load(dir)?.keys)
}

/// Revokes a key; returns it. Revoking twice keeps the first revocation time.
pub fn revoke_key(dir: &Path, key: &str) -> Result<WriteKey, ServerError> {
    modify(dir, |f| {
        let k = f.keys.iter_mut().find(|k| k.key == key).ok_or_else(|| {
            ServerError::Invalid(format!(
                "no write key {key:?} in {}",
                dir.join(KEYS_FILE).display()
            ))
        })?;
        if k.revoked_at.is_none() {
            k.revoked_at = Some(now_text());
        }
        Ok(k.clone())
    })
}

/// What a write key is worth right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    Valid {
        source: String,
        channel: Option<String>,
    },
    Revoked,
    Unknown,
}

/// Identifies a version of the keys file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// The server's view of the keys file, re-read when the file changes.
pub struct KeyCache {
    dir: PathBuf,
    state: Mutex<(Option<Stamp>, HashMap<String, WriteKey>)>,
}

impl KeyCache {
    pub fn open(dir: &Path) -> Result<KeyCache, ServerError> {
        let cache = KeyCache {
            dir: dir.to_path_buf(),
            state: Mutex::new((None, HashMap::new())),
        };
        cache.refresh()?;
        Ok(cache)
    }

    fn refresh(&self) -> Result<(), ServerError> {
        let path = self.dir.join(KEYS_FILE);
        let now = stamp(&path);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 == now && now.is_some() {
            return Ok(());
        }
        let keys = load(&self.dir)?;
        *state = (
            now,
            keys.keys.into_iter().map(|k| (k.key.clone(), k)).collect(),
        );
        Ok(())
    }

    /// Checks a key against the current keys file.
    pub fn check(&self, key: &str) -> Result<KeyStatus, ServerError> {
        self.refresh()?;
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match state.1.get(key) {
            None => KeyStatus::Unknown,
            Some(k) if k.revoked_at.is_some() => KeyStatus::Revoked,
            Some(k) => KeyStatus::Valid {
                source: k.source.clone(),
                channel: k.channel.clone(),
            },
        })
    }
}

/// The admin token: the configured one, else the one kept in the data directory, else a new
/// one saved there. The flag is true when it was generated now (to be shown once).
pub fn admin_token(dir: &Path, configured: Option<&str>) -> Result<(String, bool), ServerError> {
    if let Some(t) = configured {
        return Ok((t.trim().to_string(), false));
    }
    let path = dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ServerError::Io { path, source: e }),
    }
    let token = format!("cat_{}", random_hex(24)?);
    write_atomically(&path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok((token, true))
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The user name of an `Authorization: Basic` header (Segment puts the write key there, with
/// an empty password). `None` when the header is not Basic or not decodable.
pub fn basic_user(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(rest.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    Some(user.to_string())
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

/// Standard base64 (padding optional); a dependency for twenty lines was not worth it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_user_is_the_write_key() {
        // base64("wk_123:") and base64("wk_123") (some clients send no colon).
        assert_eq!(basic_user("Basic d2tfMTIzOg==").as_deref(), Some("wk_123"));
        assert_eq!(basic_user("basic d2tfMTIz").as_deref(), Some("wk_123"));
        assert_eq!(basic_user("Bearer d2tfMTIz"), None);
        assert_eq!(basic_user("Basic !!!"), None);
        assert_eq!(bearer_token("Bearer abc "), Some("abc"));
    }

    #[test]
    fn keys_are_created_listed_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KeyCache::open(dir.path()).unwrap();
        assert_eq!(cache.check("nope").unwrap(), KeyStatus::Unknown);
        let k = create_key(dir.path(), "call-center", Some("Call Center")).unwrap();
        assert_eq!(k.channel.as_deref(), Some("call_center"));
        assert_eq!(
            cache.check(&k.key).unwrap(),
            KeyStatus::Valid {
                source: "call-center".into(),
                channel: Some("call_center".into())
            }
        );
        revoke_key(dir.path(), &k.key).unwrap();
        assert_eq!(cache.check(&k.key).unwrap(), KeyStatus::Revoked);
        assert_eq!(list_keys(dir.path()).unwrap().len(), 1);
        assert!(revoke_key(dir.path(), "cwk_missing").is_err());
    }

    #[test]
    fn admin_token_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let (t, fresh) = admin_token(dir.path(), None).unwrap();
        assert!(fresh);
        assert_eq!(admin_token(dir.path(), None).unwrap(), (t.clone(), false));
        assert!(same_secret(&t, &t) && !same_secret(&t, "x"));
    }
}
