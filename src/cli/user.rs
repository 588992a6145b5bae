//! `user add`, `user token` and `user remove`: the users and tokens files
//! that `[http]` names. Each change rewrites the file atomically (mode
//! 0600); a running server picks it up within a few seconds
//! (`http::auth::RELOAD_CHECK`), and a removed user's sessions end then.
//!
//! Run these as the user the server runs as, so that it can read the files.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::{EXIT_CONFIG, EXIT_PROBLEM, open_store, reports::actor};
use crate::config::Config;
use crate::http::auth::files;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user who can sign in to the dashboard, or set a new password
    /// for one. The password is read from standard input when that is not a
    /// terminal (its first line), otherwise asked for twice without echo.
    Add {
        #[arg(value_parser = user_name)]
        name: String,
    },
    /// Issue an API token for NAME (replacing any earlier one) and print it
    /// once; only its SHA-256 is stored.
    Token {
        #[arg(value_parser = user_name)]
        name: String,
    },
    /// Remove NAME from the users and tokens files.
    Remove {
        #[arg(value_parser = user_name)]
        name: String,
    },
}

fn user_name(s: &str) -> Result<String, String> {
    if files::valid_name(s) {
        Ok(s.to_owned())
    } else {
        Err("a user name is 1 to 64 letters, digits, `.`, `_`, `-` or `@`".to_owned())
    }
}

pub fn run(config: &Config, command: UserCommand) -> anyhow::Result<ExitCode> {
    let http = &config.http;
    match command {
        UserCommand::Add { name } => {
            let Some(path) = &http.users_file else {
                return Ok(not_configured("http.users_file", "users"));
            };
            let password = match read_password(&name)? {
                Ok(p) => p,
                Err(refusal) => {
                    eprintln!("studywatch: {refusal}");
                    return Ok(ExitCode::from(EXIT_PROBLEM));
                }
            };
            let hash = files::hash_password(&password).map_err(anyhow::Error::msg)?;
            let had = files::set_line(path, &name, Some(&hash))?;
            let (said, action) = if had {
                ("password changed", "user_password_changed")
            } else {
                ("added", "user_added")
            };
            eprintln!("studywatch: user {name} {said} in {}", path.display());
            audit(config, action, &name);
        }
        UserCommand::Token { name } => {
            let Some(path) = &http.tokens_file else {
                return Ok(not_configured("http.tokens_file", "tokens"));
            };
            let token = files::new_token().map_err(anyhow::Error::msg)?;
            let digest = hex::encode(files::token_digest(&token));
            let had = files::set_line(path, &name, Some(&digest))?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{token}")?;
            out.flush()?;
            eprintln!(
                "studywatch: token for {name} stored in {}{}; it is shown only this once. \
                 Send it as `Authorization: Bearer TOKEN`.",
                path.display(),
                if had {
                    " (the earlier one no longer works)"
                } else {
                    ""
                }
            );
            audit(config, "token_issued", &name);
        }
        UserCommand::Remove { name } => {
            if !http.auth_configured() {
                return Ok(not_configured("http.users_file", "users"));
            }
            let mut removed = false;
            for path in [&http.users_file, &http.tokens_file].into_iter().flatten() {
                if path.exists() && files::set_line(path, &name, None)? {
                    eprintln!("studywatch: {name} removed from {}", path.display());
                    removed = true;
                }
            }
            if !removed {
                eprintln!("studywatch: no user or token named {name}");
                return Ok(ExitCode::from(EXIT_PROBLEM));
            }
            audit(config, "user_removed", &name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn not_configured(key: &str, what: &str) -> ExitCode {
    eprintln!(
        "studywatch: {key} is not set in the configuration; set it to the file that \
         should hold the {what} (e.g. \"/etc/studywatch/{what}\")"
    );
    ExitCode::from(EXIT_CONFIG)
}

/// Records who changed which user, when the catalog exists (a user may be
/// added before the gateway first runs).
fn audit(config: &Config, action: &str, name: &str) {
    if !config.catalog.path.exists() {
        return;
    }
    let written = open_store(config)
        .and_then(|mut s| Ok(s.append_audit(&actor(None), action, None, name)?));
    if let Err(e) = written {
        eprintln!("studywatch: warning: the change is made but not in the audit log: {e:#}");
    }
}

/// The new password, or why it is refused.
fn read_password(name: &str) -> anyhow::Result<Result<String, String>> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden(&format!("New password for {name}: "))?;
        let again = prompt_hidden("The same again: ")?;
        if first != again {
            return Ok(Err("the two passwords differ; nothing changed".to_owned()));
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    Ok(check_password(&password).map(|()| password))
}

fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < files::PASSWORD_MIN_CHARS {
        return Err(format!(
            "a password needs at least {} characters; nothing changed",
            files::PASSWORD_MIN_CHARS
        ));
    }
    if password.len() > files::PASSWORD_MAX_BYTES {
        return Err(format!(
            "a password may have at most {} bytes; nothing changed",
            files::PASSWORD_MAX_BYTES
        ));
    }
    Ok(())
}

/// Asks on the terminal with echo off, and puts the terminal back as it
/// was whatever happens.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    struct Restore(libc::termios);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: tcsetattr reads a termios we own.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0) };
        }
    }
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut term) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot read the terminal settings");
    }
    let restore = Restore(term);
    term.c_lflag &= !libc::ECHO;
    term.c_lflag |= libc::ECHONL;
    // SAFETY: as above.
    if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &term) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot turn echo off");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    drop(restore);
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(check_password("elevenchars").is_err());
        assert!(check_password("twelve chars").is_ok());
        // Characters, not bytes: twelve accented letters are enough.
        assert!(check_password(&"é".repeat(12)).is_ok());
        assert!(check_password(&"é".repeat(11)).is_err());
        assert!(check_password(&"x".repeat(files::PASSWORD_MAX_BYTES + 1)).is_err());
    }

    #[test]
    fn names_are_checked_before_anything_is_written() {
        assert!(user_name("alice").is_ok());
        assert!(user_name("al:ice").is_err());
        assert!(user_name("").is_err());
    }
}
