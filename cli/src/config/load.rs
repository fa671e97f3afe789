//! Loading: defaults, then the file, then `IBCONN_*` variables, merged as a TOML table with the
//! source of every key recorded.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::settings::Settings;
use super::validate::validate;
use super::ConfigError;

/// The file read when `--config` is not given (if it exists).
pub(crate) const DEFAULT_FILE: &str = "ibconn.toml";
/// The variable naming the config file when `--config` is not given.
pub(crate) const CONFIG_ENV: &str = "IBCONN_CONFIG";
/// Prefix of every override variable.
const ENV_PREFIX: &str = "IBCONN_";

/// Where the effective configuration came from (for `ibconn config`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    /// The file read, if any.
    pub(crate) file: Option<PathBuf>,
    /// Override variables applied.
    pub(crate) env: Vec<String>,
}

/// The effective configuration and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The settings.
    pub(crate) settings: Settings,
    /// Their origin.
    pub(crate) origin: Origin,
    /// What the user should hear about (an `IBCONN_*` variable that names no key), for stderr.
    pub(crate) warnings: Vec<String>,
}

/// `IBCONN_*` variables that are not configuration keys and are read elsewhere (the config
/// file's name; the test and CI tooling's), never warned about.
const NOT_KEYS: [&str; 2] = [CONFIG_ENV, "IBCONN_PYTHON"];

/// Prefixes of `IBCONN_*` variables the test tooling reads (`IBCONN_SIM_SEEDS`, …).
const NOT_KEY_PREFIXES: [&str; 3] = ["IBCONN_SIM_", "IBCONN_REGISTRY_", "IBCONN_WITNESS_"];

/// Keys that may be absent (no default value) but can still be set from the environment.
const OPTIONAL_KEYS: [&str; 2] = ["gateway", "http.token"];

/// Load the effective configuration: defaults, then `explicit` (or `$IBCONN_CONFIG`, or
/// `./ibconn.toml` if present), then the process environment.
pub(crate) fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    let file = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => match std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(p) => Some(PathBuf::from(p)),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
        },
    };
    let text = match &file {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    load_from(file.as_deref().zip(text.as_deref()), &env)
}

/// [`load`] with the file's text and the environment passed in.
pub(crate) fn load_from(
    file: Option<(&Path, &str)>,
    env: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    let defaults = Settings::default();
    let mut merged = to_table(&defaults);
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    if let Some((path, text)) = file {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        };
        // Typed first: unknown keys and wrong types are reported with line and column.
        toml::from_str::<Settings>(text).map_err(parse_err)?;
        let table: toml::Table = toml::from_str(text).map_err(parse_err)?;
        merge(
            &mut merged,
            table,
            "",
            &path.display().to_string(),
            &mut sources,
        );
    }
    let mut origin = Origin {
        file: file.map(|(p, _)| p.to_path_buf()),
        env: Vec::new(),
    };
    let mut keys = leaf_keys(&merged);
    for k in OPTIONAL_KEYS {
        if !keys.iter().any(|(x, _)| x == k) {
            keys.push((k.to_owned(), Kind::Str));
        }
    }
    // Variables under a section's prefix must name a key (a typo is an error, not ignored).
    let sections: Vec<String> = merged
        .iter()
        .filter(|(_, v)| v.is_table())
        .map(|(k, _)| env_name(&format!("{k}.")))
        .collect();
    let mut env: Vec<&(String, String)> = env.iter().collect();
    env.sort();
    let mut warnings = Vec::new();
    for (var, raw) in env {
        let Some((key, kind)) = keys.iter().find(|(k, _)| env_name(k) == *var) else {
            let suggestion = did_you_mean(var, keys.iter().map(|(k, _)| env_name(k)));
            if sections.iter().any(|s| var.starts_with(s.as_str())) {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: format!(
                        "no such configuration key{} (see ibconn.example.toml)",
                        suggestion
                            .map(|s| format!("; did you mean {s}?"))
                            .unwrap_or_default()
                    ),
                });
            }
            // A top-level name: warned about, not refused (see [`unknown_variable`]).
            warnings.extend(unknown_variable(var, suggestion));
            continue;
        };
        let value = parse_env_value(raw, *kind).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        set(&mut merged, key, value);
        // A value of the wrong type for its key is reported against the variable.
        if let Err(e) = toml::Value::Table(merged.clone()).try_into::<Settings>() {
            return Err(ConfigError::Env {
                var: var.clone(),
                message: e.to_string().trim_end().to_owned(),
            });
        }
        sources.insert(key.clone(), format!("${var}"));
        origin.env.push(var.clone());
    }
    let settings: Settings =
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: origin.file.clone().unwrap_or_default(),
                message: e.to_string(),
            })?;
    validate(&settings, &sources)?;
    Ok(Loaded {
        settings,
        origin,
        warnings,
    })
}

/// The warning for `var`, an `IBCONN_*` variable outside every section that names no key.
///
/// A warning and not an error: the `IBCONN_` prefix is shared with variables that are no keys —
/// `IBCONN_CONFIG`, the test tooling's `IBCONN_PYTHON` and `IBCONN_SIM_*`, a user's own scripts
/// — so refusing every unknown one would stop commands in environments set up for those. A
/// variable under a section's prefix (`IBCONN_POOL_…`) can only mean a key and stays an error.
fn unknown_variable(var: &str, suggestion: Option<String>) -> Option<String> {
    if NOT_KEYS.contains(&var) || NOT_KEY_PREFIXES.iter().any(|p| var.starts_with(p)) {
        return None;
    }
    Some(match suggestion {
        Some(s) => format!(
            "environment variable {var} is not a configuration key and is ignored; did you mean \
             {s}?"
        ),
        None => format!(
            "environment variable {var} is not a configuration key and is ignored (the keys \
             and their variables are in ibconn.example.toml)"
        ),
    })
}

/// The known variable closest to `var`, if it is close enough to be a typo of it (at most two
/// edits, or three for long names), or `var` with a unit left off (`…_TIMEOUT` for
/// `…_TIMEOUT_SECS`).
fn did_you_mean(var: &str, known: impl Iterator<Item = String>) -> Option<String> {
    let limit = if var.len() > 24 { 3 } else { 2 };
    known
        .chain(std::iter::once(CONFIG_ENV.to_owned()))
        .map(|k| {
            let d = if k.starts_with(&format!("{var}_")) {
                1
            } else {
                edit_distance(var, &k)
            };
            (d, k)
        })
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            let del = prev[j + 1] + 1;
            let ins = row[j] + 1;
            row.push(sub.min(del).min(ins));
        }
        prev = row;
    }
    prev[b.len()]
}

/// The settings as a TOML table (always representable: plain data).
fn to_table(s: &Settings) -> toml::Table {
    match toml::Table::try_from(s) {
        Ok(t) => t,
        Err(_) => toml::Table::new(),
    }
}

/// Deep-merge `from` into `into`, recording the source of every leaf set.
fn merge(
    into: &mut toml::Table,
    from: toml::Table,
    prefix: &str,
    source: &str,
    sources: &mut BTreeMap<String, String>,
) {
    for (k, v) in from {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => {
                merge(dst, src, &key, source, sources);
            }
            (_, v) => {
                mark_leaves(&key, &v, source, sources);
                into.insert(k, v);
            }
        }
    }
}

fn mark_leaves(key: &str, v: &toml::Value, source: &str, sources: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                mark_leaves(&format!("{key}.{k}"), x, source, sources);
            }
        }
        _ => {
            sources.insert(key.to_owned(), source.to_owned());
        }
    }
}

/// The type of a leaf, for parsing an environment value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
}

/// Every leaf key (dotted) with its type.
fn leaf_keys(t: &toml::Table) -> Vec<(String, Kind)> {
    fn walk(t: &toml::Table, prefix: &str, out: &mut Vec<(String, Kind)>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            let kind = match v {
                toml::Value::Table(sub) => {
                    walk(sub, &key, out);
                    continue;
                }
                toml::Value::Integer(_) => Kind::Int,
                toml::Value::Float(_) => Kind::Float,
                toml::Value::Boolean(_) => Kind::Bool,
                _ => Kind::Str,
            };
            out.push((key, kind));
        }
    }
    let mut out = Vec::new();
    walk(t, "", &mut out);
    out
}

/// `IBCONN_` + the key, dots and dashes as underscores, upper-cased.
pub(crate) fn env_name(key: &str) -> String {
    let mut s = String::from(ENV_PREFIX);
    s.extend(key.chars().map(|c| match c {
        '.' | '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    s
}

fn parse_env_value(raw: &str, kind: Kind) -> Result<toml::Value, String> {
    let raw_t = raw.trim();
    match kind {
        Kind::Str => Ok(toml::Value::String(raw.to_owned())),
        Kind::Bool => match raw_t {
            "true" | "1" | "yes" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Kind::Int => raw_t
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected an integer, got {raw:?}")),
        Kind::Float => match raw_t.parse::<i64>() {
            Ok(i) => Ok(toml::Value::Integer(i)),
            Err(_) => raw_t
                .parse::<f64>()
                .map(toml::Value::Float)
                .map_err(|_| format!("expected a number, got {raw:?}")),
        },
    }
}

/// Set the dotted `key` in `t` (creating tables on the way).
fn set(t: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else {
        return;
    };
    let mut cur = t;
    for p in parts {
        let entry = cur
            .entry(p.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        cur = next;
    }
    cur.insert(last.to_owned(), value);
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "# file: {}", p.display())?,
            None => write!(f, "# file: none (built-in defaults)")?,
        }
        if self.env.is_empty() {
            writeln!(f)
        } else {
            writeln!(f, "\n# environment: {}", self.env.join(", "))
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use ibconn_core::pacer::PacingRules;

    use super::*;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    pub(crate) fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        load_from(Some((Path::new("t.toml"), text)), &env(vars)).map(|l| l.settings)
    }

    #[test]
    fn precedence_is_defaults_file_env() {
        let s = load_text(
            "[pool]\nacquire_timeout_secs = 12\n[purposes.backfill]\nmax_connections = 2\n\
             [http]\ntoken = \"from-file\"\n",
            &[
                ("IBCONN_HTTP_TOKEN", "from-env"),
                ("IBCONN_PURPOSES_BACKFILL_MAX_CONNECTIONS", "3"),
                ("IBCONN_PACING_MARGIN_SECS", "0.5"),
                ("IBCONN_PYTHON", "/usr/bin/python3"),
            ],
        )
        .unwrap();
        assert_eq!(s.pool.acquire_timeout_secs, 12.0);
        assert_eq!(s.purposes["backfill"].max_connections, 3);
        // Keys the file left out keep their defaults, also inside a table it touched.
        assert_eq!(s.purposes["backfill"].max_in_flight, 0);
        assert!(s.purposes.contains_key("api"));
        assert_eq!(s.http.token.as_deref(), Some("from-env"));
        assert_eq!(s.pacing.margin_secs, 0.5);
        assert_eq!(
            s.pool_config(Vec::new()).pacing,
            PacingRules::default().with_margin(Duration::from_millis(500))
        );
    }

    #[test]
    fn a_misspelt_top_level_variable_is_warned_about_with_a_suggestion() {
        let loaded = load_from(
            None,
            &env(&[
                ("IBCONN_GATWAY", "127.0.0.1:4002"),
                ("IBCONN_PYTHON", "/usr/bin/python3"),
                ("IBCONN_SIM_SEEDS", "8"),
                ("IBCONN_SOMETHING_ELSE", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.settings.gateway, None);
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("IBCONN_GATWAY"));
        assert!(loaded.warnings[0].contains("did you mean IBCONN_GATEWAY?"));
        assert!(!loaded.warnings[1].contains("did you mean"));
        // Under a known section it stays an error, now with the suggestion.
        let e = load_text("", &[("IBCONN_POOL_ACQUIRE_TIMEOUT", "3")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("did you mean IBCONN_POOL_ACQUIRE_TIMEOUT_SECS?"),
            "{e}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn embedded_is_a_gateway_in_the_file() {
        let s = load_text("gateway = \"embedded\"\n", &[]).unwrap();
        assert_eq!(s.gateway.as_deref(), Some("embedded"));
        assert_eq!(s.real_gateway(), None);
    }

    #[test]
    fn env_names_follow_the_keys() {
        assert_eq!(env_name("http.token"), "IBCONN_HTTP_TOKEN");
        assert_eq!(
            env_name("purposes.backfill.max_connections"),
            "IBCONN_PURPOSES_BACKFILL_MAX_CONNECTIONS"
        );
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        // ibconn.example.toml documents every key with its default value (the path-valued keys
        // commented out, since their defaults depend on the user's directories).
        let text = include_str!("../../../ibconn.example.toml");
        let example: Settings = toml::from_str(text).unwrap();
        let defaults = Settings::default();
        assert_eq!(example, defaults);
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut documented: Vec<String> = leaf_keys(&table).into_iter().map(|(k, _)| k).collect();
        documented.extend(
            [
                "client_ids.registry_file",
                "coordination.pacing_dir",
                "validate.cache_file",
            ]
            .into_iter()
            .map(str::to_owned),
        );
        for (key, _) in leaf_keys(&to_table(&defaults)) {
            assert!(documented.contains(&key), "{key} is not in the example");
        }
    }
}
