//! The users and tokens files: their line formats, reading them (a problem
//! names the file and the line), and rewriting one user's line atomically.
//!
//! Users file, one line per user: `name:$argon2id$v=19$m=...,t=...,p=...$salt$hash`
//! (a PHC string). Tokens file: `name:` and the SHA-256 of the token in
//! lower-case hex. In both, blank lines and lines starting with `#` are
//! comments, and a name appears at most once. Only digests of tokens are
//! stored: tokens are 32 random bytes, so a fast hash is as good as a slow
//! one, and the file gives nobody a working token.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2};
use sha2::{Digest, Sha256};

/// The longest user name.
pub const NAME_MAX: usize = 64;
/// The shortest password `studywatch user add` takes.
pub const PASSWORD_MIN_CHARS: usize = 12;
/// The longest password anyone may try: hashing is costly, and nobody types
/// more.
pub const PASSWORD_MAX_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} line {line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// 1 to 64 letters, digits, `.`, `_`, `-` or `@`: safe in a file line, a
/// log line and the audit log.
pub fn valid_name(name: &str) -> bool {
    (1..=NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

/// A file's identity and version as `stat` sees it; a rewrite (rename of a
/// new file) changes the inode, an edit in place the time or length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        }
    }

    pub fn read(path: &Path) -> io::Result<Stamp> {
        std::fs::metadata(path).map(|m| Stamp::of(&m))
    }
}

/// User name → PHC hash string.
pub type Users = HashMap<String, String>;
/// (name, SHA-256 of the token).
pub type Tokens = Vec<(String, [u8; 32])>;

/// Reads and checks a users file.
pub fn read_users(path: &Path) -> Result<(Users, Stamp), Error> {
    let (text, stamp) = read(path)?;
    let mut users = Users::new();
    for entry in entries(&text) {
        let (line, name, hash) = entry;
        let problem = |problem: String| Error::Line {
            path: path.to_owned(),
            line,
            problem,
        };
        check_name(name).map_err(problem)?;
        check_hash(hash).map_err(problem)?;
        if users.insert(name.to_owned(), hash.to_owned()).is_some() {
            return Err(problem(format!("user `{name}` appears twice")));
        }
    }
    Ok((users, stamp))
}

/// Reads and checks a tokens file.
pub fn read_tokens(path: &Path) -> Result<(Tokens, Stamp), Error> {
    let (text, stamp) = read(path)?;
    let mut tokens = Tokens::new();
    for (line, name, digest) in entries(&text) {
        let problem = |problem: String| Error::Line {
            path: path.to_owned(),
            line,
            problem,
        };
        check_name(name).map_err(problem)?;
        let mut bytes = [0u8; 32];
        if digest.len() != 64
            || digest.bytes().any(|b| b.is_ascii_uppercase())
            || hex::decode_to_slice(digest, &mut bytes).is_err()
        {
            return Err(problem(
                "after the name comes the token's SHA-256 as 64 lower-case hex digits \
                 (`studywatch user token NAME` writes it)"
                    .to_owned(),
            ));
        }
        if tokens.iter().any(|(n, _)| n == name) {
            return Err(problem(format!("`{name}` has a second token")));
        }
        tokens.push((name.to_owned(), bytes));
    }
    Ok((tokens, stamp))
}

fn read(path: &Path) -> Result<(String, Stamp), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let stamp = Stamp::of(&file.metadata().map_err(io)?);
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io)?;
    Ok((text, stamp))
}

/// The `name:value` lines with their 1-based numbers; a line without a
/// colon comes out with an empty name, which `check_name` refuses.
fn entries(text: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (name, value) = line.split_once(':').unwrap_or(("", line));
        Some((i + 1, name.trim(), value.trim()))
    })
}

fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err("expected `name:...`, a name of 1 to 64 letters, digits, `.`, `_`, `-` or `@`".into())
    }
}

fn check_hash(hash: &str) -> Result<(), String> {
    let refuse = || {
        "after the name comes an argon2id hash `$argon2id$v=19$...` \
         (`studywatch user add NAME` writes it)"
            .to_owned()
    };
    let parsed = PasswordHash::new(hash).map_err(|_| refuse())?;
    if parsed.algorithm != Algorithm::Argon2id.ident() || parsed.hash.is_none() {
        return Err(refuse());
    }
    argon2::Params::try_from(&parsed).map_err(|e| format!("argon2 parameters: {e}"))?;
    Ok(())
}

/// Hashes a password with Argon2id and the crate's default parameters (the
/// OWASP minimum) and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash`. Slow on purpose: call
/// it on a blocking thread.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A fresh API token: 32 random bytes in hex.
pub fn new_token() -> Result<String, String> {
    random_hex()
}

/// 32 random bytes as 64 hex digits (tokens, session ids, CSRF tokens).
pub fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

/// What the tokens file stores for a token.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Sets (`Some`) or removes (`None`) the line of `name` in the file at
/// `path`, keeping every other line as it is, and replaces the file
/// atomically (a new file, mode 0600, fsynced, renamed over the old one, its
/// directory fsynced). A missing file counts as empty. Returns whether the
/// file had a line for `name`.
pub fn set_line(path: &Path, name: &str, value: Option<&str>) -> Result<bool, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let (text, had) = replace_line(&old, name, value);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(io)?;
    Ok(had)
}

/// `old` with `name`'s line replaced by `name:value` (or appended), or
/// removed; later duplicates of it are dropped.
fn replace_line(old: &str, name: &str, value: Option<&str>) -> (String, bool) {
    let mut out = String::with_capacity(old.len() + 128);
    let mut had = false;
    for line in old.lines() {
        let trimmed = line.trim();
        let is_name = !trimmed.starts_with('#')
            && trimmed
                .split_once(':')
                .is_some_and(|(n, _)| n.trim() == name);
        if !is_name {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if !had {
            if let Some(v) = value {
                out.push_str(&format!("{name}:{v}\n"));
            }
        }
        had = true;
    }
    if !had {
        if let Some(v) = value {
            out.push_str(&format!("{name}:{v}\n"));
        }
    }
    (out, had)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("f");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn names_are_short_and_plain() {
        for good in ["alice", "a", "j.smith@trust.nhs.uk", "ris-bot_2"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "x".repeat(65);
        for bad in ["", "al ice", "a:b", "émile", "a\nb", long.as_str()] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name(&"x".repeat(64)));
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(check_hash(&hash).is_ok());
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterY"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn users_file_lines_are_checked_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let hash = hash_password("correct horse battery").unwrap();
        let p = write(
            dir.path(),
            &format!("# staff\n\nalice:{hash}\n  bob : {hash}  \n"),
        );
        let (users, _) = read_users(&p).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users["bob"], hash);

        for (text, line, what) in [
            (format!("alice:{hash}\nbob\n"), 2, "name"),
            (format!("# x\nal ice:{hash}\n"), 2, "name"),
            ("alice:plaintext\n".to_owned(), 1, "argon2id"),
            (
                "alice:$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\n".to_owned(),
                1,
                "argon2id",
            ),
            (format!("alice:{hash}\nalice:{hash}\n"), 2, "twice"),
        ] {
            let p = write(dir.path(), &text);
            let e = read_users(&p).unwrap_err().to_string();
            assert!(
                e.contains(&format!("line {line}:")) && e.contains(what),
                "{text:?}: {e}"
            );
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(
                !e.contains(&hash) && !e.contains("aGFzaGhhc2hoYXNo"),
                "the hash is not echoed: {e}"
            );
        }
        let missing = dir.path().join("missing");
        let e = read_users(&missing).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn tokens_file_holds_digests() {
        let dir = tempfile::tempdir().unwrap();
        let token = new_token().unwrap();
        assert_eq!(token.len(), 64);
        let digest = hex::encode(token_digest(&token));
        let p = write(dir.path(), &format!("# bots\nris:{digest}\n"));
        let (tokens, _) = read_tokens(&p).unwrap();
        assert_eq!(tokens, vec![("ris".to_owned(), token_digest(&token))]);

        for text in [
            format!("ris:{}\n", &digest[..63]),
            format!("ris:{}\n", digest.to_uppercase()),
            format!("ris:{digest}\nris:{digest}\n"),
            format!("ris {digest}\n"),
        ] {
            let p = write(dir.path(), &text);
            assert!(read_tokens(&p).is_err(), "{text:?}");
        }
    }

    #[test]
    fn set_line_replaces_appends_and_removes_keeping_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        assert!(!set_line(&p, "alice", Some("one")).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "alice:one\n");
        std::fs::write(&p, "# keep me\nalice:one\nbob:two\nalice:dup\n").unwrap();
        assert!(set_line(&p, "alice", Some("three")).unwrap());
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "# keep me\nalice:three\nbob:two\n"
        );
        assert!(!set_line(&p, "carol", Some("four")).unwrap());
        assert!(set_line(&p, "bob", None).unwrap());
        assert!(!set_line(&p, "bob", None).unwrap());
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "# keep me\nalice:three\ncarol:four\n"
        );
        let mode = std::fs::metadata(&p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temp file is left behind");
    }
}
