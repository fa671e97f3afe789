//! `ibconn fetch SYMBOL… --out-dir DIR` (or `--symbols-file FILE`): several symbols in one run,
//! one file each, through one pool and one pacer with requests taken round-robin across the
//! symbols ([`crate::drive`]), and one summary.
//!
//! Each file is named after its contract ([`file_name`]) and keeps every guarantee of `--out`:
//! sidecar identity, the lock (all taken before the first request), durable writes, resume, and
//! what SIGINT/SIGTERM leave. Exit code: 0 every symbol complete; 4 every symbol unknown to IB
//! (error 200); 1 no symbol got anything (each unknown or failed); 3 otherwise — some files
//! written, the per-symbol lines say which symbol is incomplete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ibconn_core::backfill::{HeldCounts, Summary};
use ibconn_core::contract_spec::ContractSpec;
use serde::Serialize;

use crate::args::FetchArgs;
use crate::config::Settings;
use crate::drive;
use crate::fetch::{
    human, prepare, run_totals, write_json, CliError, FetchSummary, Progress, RunTotals,
    EXIT_NO_SUCH_SYMBOL, EXIT_PARTIAL,
};
use crate::output::OutFile;
use crate::signals::Stop;

/// The largest `--symbols-file` read (a bound on memory; far above any real list).
const MAX_SYMBOLS_FILE: u64 = 1 << 20;

/// The contracts a command names: the SYMBOL arguments, then `--symbols-file`'s lines, each
/// once (a repeat is dropped with a warning). Exit 2 for none, an unreadable file or a bad
/// line (named by its number).
pub(crate) fn symbols(args: &FetchArgs) -> Result<Vec<ContractSpec>, CliError> {
    let mut all = args.symbols.clone();
    if let Some(path) = &args.symbols_file {
        all.extend(read_symbols_file(path)?);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut unique = Vec::new();
    for spec in all {
        if seen.insert(spec.to_string()) {
            unique.push(spec);
        } else {
            warn(&format!("{spec} is named twice; fetched once"));
        }
    }
    if unique.is_empty() {
        return Err(CliError::Usage(
            "no symbol: name one or more (AAPL EUR.USD …) or give --symbols-file FILE".to_owned(),
        ));
    }
    Ok(unique)
}

/// `--symbols-file`: one contract per line; `#` starts a comment; blank lines are skipped.
fn read_symbols_file(path: &Path) -> Result<Vec<ContractSpec>, CliError> {
    let shown = path.display();
    let unreadable = |e: &dyn std::fmt::Display| {
        CliError::Usage(format!("--symbols-file {shown}: cannot read it: {e}"))
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(&e))?;
    if !meta.is_file() {
        return Err(unreadable(&"not a regular file"));
    }
    if meta.len() > MAX_SYMBOLS_FILE {
        return Err(unreadable(&format!(
            "{} bytes, more than the {MAX_SYMBOLS_FILE} a list of symbols needs",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(&e))?;
    parse_symbols(&text)
        .map_err(|(line, e)| CliError::Usage(format!("--symbols-file {shown}: line {line}: {e}")))
}

/// The contracts of a symbols file's text, or the first bad line's number and why.
fn parse_symbols(text: &str) -> Result<Vec<ContractSpec>, (usize, String)> {
    let mut specs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // A contract never holds `#`: everything after it is a comment.
        let spec = line.split('#').next().unwrap_or_default().trim();
        if spec.is_empty() {
            continue;
        }
        specs.push(ContractSpec::parse(spec).map_err(|e| (i + 1, e.to_string()))?);
    }
    Ok(specs)
}

/// The file a contract's bars go to in `--out-dir`: its canonical text (as `ibconn validate`
/// prints it, upper case) with `:` as `-` and a space or `/` as `_`, then `.csv` — `AAPL.csv`,
/// `EUR.USD.csv`, `ESZ6.csv`, `ES-FUT-202612.csv`, `SPX-IND.csv`,
/// `AAPL-OPT-20261218-200-C.csv`, `@265598.csv`, `BRK_B.csv`. Only letters, digits, `.`, `-`,
/// `_`, `@` and `&` remain, and a leading `.` or `-` becomes `_`, so the name is safe on every
/// file system and never hidden. Two contracts whose names meet are refused together
/// ([`names`]); a file of another contract under the same name later is refused by its sidecar.
pub(crate) fn file_name(spec: &ContractSpec) -> String {
    let mut name: String = spec
        .to_string()
        .chars()
        .map(|c| match c {
            ':' => '-',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '&') => c,
            _ => '_',
        })
        .collect();
    if name.starts_with(['.', '-']) {
        name.replace_range(..1, "_");
    }
    name.push_str(".csv");
    name
}

/// The file name of each contract; two contracts with one name are refused (exit 2).
fn names(specs: &[ContractSpec]) -> Result<Vec<String>, CliError> {
    let mut by_name: BTreeMap<String, &ContractSpec> = BTreeMap::new();
    let mut out = Vec::new();
    for spec in specs {
        let name = file_name(spec);
        if let Some(other) = by_name.insert(name.clone(), spec) {
            return Err(CliError::Usage(format!(
                "{other} and {spec} would both be written to {name}: fetch them in two runs \
                 with different --out-dir"
            )));
        }
        out.push(name);
    }
    Ok(out)
}

/// One symbol's account in the batch summary.
#[derive(Debug, Serialize)]
pub(crate) struct SymbolSummary {
    /// The contract as given (canonical text; the value of the file's symbol column).
    pub(crate) symbol: String,
    /// Its file.
    pub(crate) file: PathBuf,
    /// Whether the file was written (not for a symbol that does not exist, nor when nothing
    /// was asked).
    pub(crate) written: bool,
    /// This symbol's exit code, as a one-symbol fetch would have it.
    pub(crate) exit_code: u8,
    /// Bars in the file.
    pub(crate) bars: usize,
    /// Bars this run added.
    pub(crate) bars_added: usize,
    /// Historical requests sent for it (retries included).
    pub(crate) requests: u64,
    /// Writing its file failed.
    pub(crate) error: Option<String>,
    /// The job's own account.
    pub(crate) job: Summary,
}

/// The account of a fetch of several symbols (`--json`, `--summary-json`): the run's totals as
/// in a one-symbol summary, and one entry per symbol.
#[derive(Debug, Serialize)]
pub(crate) struct BatchSummary {
    /// The run: gateway, time, totals, pacing (of the one pool all symbols shared).
    #[serde(flatten)]
    pub(crate) run: RunTotals,
    /// Requests that waited for their pacing slot, by the rule that held each.
    pub(crate) pacing_held_by: HeldCounts,
    /// Per symbol, in the order given.
    pub(crate) symbols: Vec<SymbolSummary>,
}

/// The batch's exit code from its symbols' (see the [module docs](self)).
pub(crate) fn exit_code(codes: &[u8]) -> u8 {
    if codes.iter().all(|&c| c == 0) {
        0
    } else if codes.iter().all(|&c| c == EXIT_NO_SUCH_SYMBOL) {
        EXIT_NO_SUCH_SYMBOL
    } else if codes.iter().all(|&c| c == 1 || c == EXIT_NO_SUCH_SYMBOL) {
        1
    } else {
        EXIT_PARTIAL
    }
}

/// `ibconn fetch … --out-dir DIR`: every symbol of `specs` into its own file in DIR, through
/// one pool; write every file (also on failure: nothing fetched is lost), summarise.
pub(crate) fn fetch(
    args: &FetchArgs,
    settings: &Settings,
    dir: &Path,
    specs: &[ContractSpec],
) -> Result<BatchSummary, CliError> {
    let names = names(specs)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Io(format!("--out-dir {}: {e}", dir.display())))?;
    // Every lock and every refusal (another request's file, a format asked for that a file does
    // not have, a bad contract) before the first request.
    let mut units = Vec::with_capacity(specs.len());
    let mut paths = Vec::with_capacity(specs.len());
    for (spec, name) in specs.iter().zip(&names) {
        let path = dir.join(name);
        let file = OutFile::open(&path)?;
        units.push(prepare(args, settings, spec, Some(file), true)?);
        paths.push(path);
    }
    let stop = Stop::install();
    #[allow(clippy::disallowed_methods)] // wall time of the run, for the summary only
    let started = Instant::now();
    let total = units.iter().map(|u| u.job.progress().chunks_total).sum();
    let progress = Progress::new(total, args.gateway.is_none(), settings);
    let ran = drive::run(args, settings, &mut units, &progress, &stop);
    progress.bar.finish_and_clear();
    let wall = started.elapsed();

    let failed_run = ran.error.is_some();
    let mut symbols = Vec::with_capacity(units.len());
    for (unit, file) in units.iter().zip(paths) {
        // A failure stops the run for the units not finished; a finished one is whole.
        let stopped = failed_run && !unit.job.is_finished();
        let (bars, error) = match unit.finish(stopped) {
            Ok(bars) => (bars, None),
            Err(e) => (unit.output.bars(&unit.job).len(), Some(e.to_string())),
        };
        let job = unit.job.summary();
        let written = error.is_none()
            && job.lookup_error.is_none()
            && !(stopped && job.progress.requests == 0);
        symbols.push(SymbolSummary {
            symbol: unit.label.clone(),
            file,
            written,
            exit_code: if error.is_some() {
                1
            } else {
                unit.exit_code(stopped)
            },
            bars,
            bars_added: job.progress.bars_added,
            requests: job.progress.requests,
            error,
            job,
        });
    }
    let codes: Vec<u8> = symbols.iter().map(|s| s.exit_code).collect();
    let counts = (
        symbols.iter().map(|s| s.requests).sum(),
        symbols.iter().map(|s| s.bars).sum(),
        symbols.iter().map(|s| s.bars_added).sum(),
    );
    let totals = run_totals(args, &ran, wall, counts, exit_code(&codes));
    let out = BatchSummary {
        pacing_held_by: totals.held_by,
        run: totals,
        symbols,
    };
    if let Some(path) = &args.summary_json {
        write_json(path, &out)?;
    }
    Ok(out)
}

/// What `ibconn fetch` did: one symbol to `--out` or stdout, or several to `--out-dir`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Fetched {
    /// One symbol (the summary it always had).
    One(Box<FetchSummary>),
    /// `--out-dir`.
    Many(Box<BatchSummary>),
}

impl Fetched {
    /// The process's exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::One(s) => s.run.exit_code,
            Self::Many(s) => s.run.exit_code,
        }
    }

    /// Human-readable lines for stderr.
    pub(crate) fn text(&self) -> String {
        match self {
            Self::One(s) => s.text(),
            Self::Many(s) => s.text(),
        }
    }
}

/// `ibconn fetch`: every symbol named into `--out-dir`, or the one symbol to `--out` or stdout
/// (several without `--out-dir` are refused: exit 2).
pub(crate) fn run(args: &FetchArgs, settings: &Settings) -> Result<Fetched, CliError> {
    let specs = symbols(args)?;
    match (&args.out_dir, specs.as_slice()) {
        (Some(dir), _) => fetch(args, settings, dir, &specs).map(|s| Fetched::Many(Box::new(s))),
        (None, [one]) => {
            crate::fetch::fetch(args, settings, one).map(|s| Fetched::One(Box::new(s)))
        }
        (None, _) => Err(CliError::Usage(format!(
            "{} symbols: give --out-dir DIR for one file each",
            specs.len()
        ))),
    }
}

/// `ibconn: warning: …` on stderr.
fn warn(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "ibconn: warning: {text}");
}

impl BatchSummary {
    /// Human-readable lines for stderr: the totals, a line per symbol, pacing, failures.
    pub(crate) fn text(&self) -> String {
        let r = &self.run;
        if let (Some(e), 0) = (&r.error, r.requests) {
            // Nothing was asked (e.g. the gateway refused the connection): only why.
            return format!("error: {e}\n");
        }
        let time = match r.virtual_secs {
            Some(v) => format!(
                "{} virtual ({} wall)",
                human(Duration::from_secs_f64(v)),
                human(Duration::from_secs_f64(r.wall_secs))
            ),
            None => format!("{} wall", human(Duration::from_secs_f64(r.wall_secs))),
        };
        let bar_size = self
            .symbols
            .first()
            .map(|s| s.job.bar_size.as_str())
            .unwrap_or_default();
        let mut s = format!(
            "{} symbols, {bar_size}: {} bars ({} new) from {} requests in {time} on {}\n",
            self.symbols.len(),
            r.bars,
            r.bars_added,
            r.requests,
            r.gateway,
        );
        let rows: Vec<[String; 5]> = self
            .symbols
            .iter()
            .map(|x| {
                let p = &x.job.progress;
                [
                    x.symbol.clone(),
                    x.job.what_to_show.to_string(),
                    if x.written {
                        x.file.display().to_string()
                    } else {
                        "(not written)".to_owned()
                    },
                    format!(
                        "{} bars ({} new), {} requests, {} closed, {} empty, {} failed",
                        x.bars,
                        x.bars_added,
                        x.requests,
                        p.chunks_closed,
                        p.chunks_empty,
                        p.chunks_failed
                    ),
                    status(x.exit_code).to_owned(),
                ]
            })
            .collect();
        for line in crate::util::table(&rows).lines() {
            s.push_str(&format!("  {line}\n"));
        }
        let h = &self.pacing_held_by;
        s.push_str(&format!(
            "pacing: {} requests waited ({} in total; {} for the 60-per-10-minutes window, {} \
             for the per-contract burst rule, {} for others), {} violations",
            r.pacing_waits,
            human(Duration::from_millis(r.pacing_wait_ms)),
            h.historical_window,
            h.burst,
            h.identical + h.other,
            r.pacing_violations,
        ));
        if let Some(g) = r.gateway_violations {
            s.push_str(&format!(" (gateway counted {g})"));
        }
        s.push('\n');
        for x in &self.symbols {
            for f in &x.job.failures {
                s.push_str(&format!(
                    "{}: failed chunk {} [{}, {}): {}\n",
                    x.symbol, f.chunk, f.start_unix, f.end_unix, f.error
                ));
            }
            if let Some(e) = &x.job.lookup_error {
                s.push_str(&format!("{}: error: {e}\n", x.symbol));
            }
            if let Some(e) = &x.error {
                s.push_str(&format!("{}: error: {e}\n", x.symbol));
            }
        }
        if let Some(e) = &r.error {
            s.push_str(&format!("error: {e}\n"));
        }
        s
    }
}

/// A symbol's exit code in words.
fn status(code: u8) -> &'static str {
    match code {
        0 => "ok",
        EXIT_PARTIAL => "partial",
        EXIT_NO_SUCH_SYMBOL => "no such symbol",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ContractSpec {
        ContractSpec::parse(s).unwrap()
    }

    #[test]
    fn file_names_are_safe_and_follow_the_contract() {
        for (text, name) in [
            ("aapl", "AAPL.csv"),
            ("EUR.USD", "EUR.USD.csv"),
            ("ESZ6", "ESZ6.csv"),
            ("ES:FUT:202612", "ES-FUT-202612.csv"),
            ("SPX:IND", "SPX-IND.csv"),
            ("AAPL:OPT:20261218:200:C", "AAPL-OPT-20261218-200-C.csv"),
            ("@265598", "@265598.csv"),
            ("BRK B", "BRK_B.csv"),
            ("BRK/B", "BRK_B.csv"),
            ("AAPL  261218C00200000", "AAPL__261218C00200000.csv"),
            (".X", "_X.csv"),
        ] {
            assert_eq!(file_name(&spec(text)), name, "{text}");
        }
        let clash = names(&[spec("BRK B"), spec("AAPL"), spec("BRK/B")]).unwrap_err();
        assert!(clash.to_string().contains("BRK_B.csv"), "{clash}");
        assert_eq!(clash.exit_code(), 2);
    }

    #[test]
    fn symbols_files_skip_comments_and_name_a_bad_line() {
        let text = "# majors\nAAPL\n\n  EUR.USD   # forex\nESZ6\n";
        let got: Vec<String> = parse_symbols(text)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["AAPL", "EUR.USD", "ESZ6"]);
        let (line, why) = parse_symbols("AAPL\nES:XYZ\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(why.contains("XYZ"), "{why}");
    }

    #[test]
    fn the_batch_exit_code_is_partial_unless_all_agree() {
        assert_eq!(exit_code(&[0, 0]), 0);
        assert_eq!(exit_code(&[4, 4]), 4);
        assert_eq!(exit_code(&[0, 4]), 3);
        assert_eq!(exit_code(&[3, 0]), 3);
        assert_eq!(exit_code(&[1, 4]), 1);
        assert_eq!(exit_code(&[1, 0]), 3);
        assert_eq!(exit_code(&[1]), 1);
    }
}
