//! `ibconn.toml`: one configuration file for every command, with `IBCONN_*` environment
//! overrides.
//!
//! Precedence, lowest first: built-in defaults (taken from the core's `Default` impls where the
//! core has one) < the file (`--config FILE`, else `./ibconn.toml` if present) < environment
//! variables < command-line flags. Every key of the file has a variable: `IBCONN_` followed by
//! the key's path with dots as underscores, upper-cased (`http.token` → `IBCONN_HTTP_TOKEN`,
//! `purposes.backfill.max_connections` → `IBCONN_PURPOSES_BACKFILL_MAX_CONNECTIONS`). A variable
//! under a known section that names no key (a typo) is an error, like an unknown key in the file.
//!
//! The file is parsed with serde (`deny_unknown_fields`), so a misspelt key or a wrong type fails
//! with the file, line and key; then every value is range-checked, naming the key and where it
//! came from.

use std::path::PathBuf;

mod load;
mod settings;
mod validate;

pub(crate) use load::{load, Loaded, Origin};
pub(crate) use settings::{parse_store, secs, Settings, StoreKind};

/// Why the configuration is unusable (exit 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not parse: syntax, an unknown key or a wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line, column, key).
        message: String,
    },
    /// An environment variable names no key, or its value has the wrong type.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("{key} (from {source_}): {message}")]
    Invalid {
        /// The key, dotted.
        key: String,
        /// Where the value came from (`default`, the file, or the variable).
        source_: String,
        /// What is wrong.
        message: String,
    },
}
