//! [`Readers`]: connections for the HTTP layer's reads.
//!
//! Pages and API reads never queue behind ingest's commits on the catalog
//! thread: in WAL mode a reader sees the last committed state without taking
//! the write lock, so each request borrows one of a few read connections on a
//! blocking thread. Writes (acknowledging, linking) still go through
//! [`super::Catalog`], so they are ordered with everything else the server
//! writes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Error, Store};

/// At most this many idle read connections are kept.
const KEEP: usize = 4;

/// A small pool of read connections to the catalog file.
#[derive(Clone)]
pub struct Readers {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Store>>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Readers {
    /// Readers of the catalog at `path`, which must already exist (the server
    /// opens the catalog itself first, which creates it and its schema).
    pub fn new(path: &Path) -> Readers {
        Readers {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs `f` with a read connection on a blocking thread.
    ///
    /// `f` must only read: the connection is shared with later requests and
    /// nothing commits what it might write.
    pub async fn read<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Store) -> Result<R, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let store = match pooled {
                Some(s) => s,
                None => Store::open_reader(&inner.path)?,
            };
            let out = f(&store);
            let mut idle = inner.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < KEEP {
                idle.push(store);
            }
            out
        })
        .await
        .map_err(|_| Error::ThreadGone)?
    }
}
