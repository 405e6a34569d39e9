//! `./.env`: settings kept beside the programs (what `scripts/up` chose, or
//! an operator's), read under the environment. The example binaries and
//! the dead-letter tool call [`load`] first thing.

use std::collections::HashSet;
use std::path::Path;

/// What [`load`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DotEnv {
    /// Whether the file exists.
    pub found: bool,
    /// Settings taken from it: those the environment did not already give.
    pub taken: usize,
    /// Lines that are not `KEY=VALUE` and were skipped. Only counted, never
    /// quoted: a line may hold a password (docker compose, which reads the
    /// same file, takes an unquoted value with spaces; this reader does not).
    pub skipped: usize,
}

impl DotEnv {
    /// What to tell the operator about skipped lines, if any were.
    pub fn skipped_note(&self) -> Option<String> {
        (self.skipped > 0).then(|| {
            format!(
                "{} lines of ./.env that are not KEY=VALUE were skipped (quote a value that \
                 holds spaces)",
                self.skipped
            )
        })
    }
}

/// Reads `./.env` in the working directory (not its parents): every
/// `KEY=VALUE` whose key the environment does not set is set. Of two lines
/// for one key the first wins, as in `scripts/services.sh`. A line that
/// cannot be read is skipped and counted. Call it before any thread reads
/// the environment.
///
/// # Errors
///
/// The file exists but cannot be read.
pub fn load() -> std::io::Result<DotEnv> {
    load_from(Path::new(".env"))
}

/// [`load`] from another file.
///
/// # Errors
///
/// The file exists but cannot be read.
pub fn load_from(path: &Path) -> std::io::Result<DotEnv> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DotEnv::default()),
        Err(e) => return Err(e),
    };
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut found = DotEnv {
        found: true,
        ..DotEnv::default()
    };
    let mut seen = HashSet::new();
    for item in dotenvy::Iter::new(text) {
        match item {
            Ok((key, value)) => {
                if seen.insert(key.clone()) && std::env::var_os(&key).is_none() {
                    std::env::set_var(key, value);
                    found.taken += 1;
                }
            }
            // Not text: nothing further can be read.
            Err(dotenvy::Error::Io(e)) => return Err(e),
            Err(_) => found.skipped += 1,
        }
    }
    Ok(found)
}
