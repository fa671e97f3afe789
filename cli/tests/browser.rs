//! The dashboard in a real browser: headless Chromium loads `ibconn serve`'s page in front of a
//! simulated gateway (`ibconn sim` over TCP), runs its script until it has polled live data, and
//! the test reads the rendered DOM (`--dump-dom`). A fetch through the same gateway by another
//! process must then move the historical-requests gauge: the pacing book is per gateway and
//! shared through the file store of the state directory both processes use. A screenshot is
//! left at `target/dashboard.png`.
//!
//! Chromium: `IBCONN_CHROMIUM`, else `chromium` or `chromium-browser` on the PATH. Without one
//! the test fails when `IBCONN_CHROMIUM` or `CI=true` is set, and is skipped (with a message)
//! otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{health_until, ibconn_std_in, scratch, Serve};

const TOKEN: &str = "br0wser";

/// How long one Chromium run may take before it is killed (a cold start on a loaded 2-core
/// machine takes a few seconds).
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(60);

/// Virtual time a page gets before its DOM is read: two 2-second polls and then some.
const BUDGET_MS: u32 = 5_000;

/// The Chromium binary, or `None` when this run may skip.
fn chromium() -> Option<PathBuf> {
    let required = std::env::var_os("IBCONN_CHROMIUM").is_some()
        || std::env::var("CI").is_ok_and(|v| v == "true");
    let found = match std::env::var_os("IBCONN_CHROMIUM") {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
                .find(|p| p.is_file())
        }),
    };
    if found.is_none() {
        assert!(
            !required,
            "Chromium is required (IBCONN_CHROMIUM or CI=true is set) but was not found: \
             IBCONN_CHROMIUM={:?}; install the Debian package `chromium`",
            std::env::var_os("IBCONN_CHROMIUM")
        );
        eprintln!(
            "skipping the browser test: no chromium on the PATH (apt-get install chromium, or \
             set IBCONN_CHROMIUM)"
        );
    }
    found
}

/// A Chromium run in its own process group, killed with every child it started (renderer,
/// GPU and zygote processes) when dropped, whatever the test did.
struct Browser {
    child: Child,
}

impl Browser {
    /// Run Chromium headless on `url` with `args`, its profile in `profile`; stdout captured.
    fn run(bin: &Path, profile: &Path, args: &[String], url: &str) -> String {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={BUDGET_MS}"))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
        let mut b = Browser {
            child: cmd.spawn().unwrap(),
        };
        let mut stdout = b.child.stdout.take().unwrap();
        // Read on a thread, so the deadline holds even when Chromium hangs with the pipe open.
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
            out
        });
        let start = Instant::now();
        loop {
            if let Some(status) = b.child.try_wait().unwrap() {
                assert!(status.success(), "chromium exited with {status}");
                break;
            }
            assert!(
                start.elapsed() < CHROMIUM_DEADLINE,
                "chromium did not finish within {CHROMIUM_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(b);
        reader.join().unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the browser's helpers may outlive a killed parent.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The opening tag of the element whose tag contains `needle`.
fn tag_with<'a>(dom: &'a str, needle: &str) -> Option<&'a str> {
    let at = dom.find(needle)?;
    let open = dom[..at].rfind('<')?;
    let close = at + dom[at..].find('>')?;
    Some(&dom[open..=close])
}

/// The value of attribute `name` in an opening `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(&tag[from..from + tag[from..].find('"')?])
}

/// A gauge's number as rendered.
fn gauge(dom: &str, name: &str) -> u64 {
    let tag = tag_with(dom, &format!("id=\"{name}-value\""))
        .unwrap_or_else(|| panic!("no {name} gauge in\n{dom}"));
    attr(tag, "data-value")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} gauge has no number: {tag}"))
}

/// What a rendered page shows.
struct Rendered {
    dom: String,
    state: String,
    updates: u64,
}

fn render(bin: &Path, profile: &Path, url: &str) -> Rendered {
    let dom = Browser::run(bin, profile, &["--dump-dom".to_owned()], url);
    let body = tag_with(&dom, "<body").unwrap_or_else(|| panic!("no body in {dom:?}"));
    Rendered {
        state: attr(body, "data-state").unwrap_or_default().to_owned(),
        updates: attr(body, "data-updates")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        dom,
    }
}

/// Render `url` until the page has polled live data at least twice (bounded tries).
fn render_live(bin: &Path, profile: &Path, url: &str) -> Rendered {
    let mut last = None;
    for _ in 0..3 {
        let r = render(bin, profile, url);
        if r.state == "live" && r.updates >= 2 {
            return r;
        }
        last = Some((r.state, r.updates, r.dom));
    }
    let (state, updates, dom) = last.unwrap();
    panic!("the page never went live: state {state:?} after {updates} updates\n{dom}");
}

/// `target/` of this build (the test binary runs from `target/<profile>/deps/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

#[test]
fn the_dashboard_renders_live_pool_state_and_its_gauges_move_after_a_fetch() {
    let Some(bin) = chromium() else { return };
    let started = Instant::now();
    let dir = scratch("browser");
    // One state directory for the gateway's clients: the pacing book and registry are shared.
    let mut sim = ibconn_std_in(&dir);
    // IB serves 5-second bars ~6 months back: the gateway's clock is just after the range.
    sim.args(["sim", "--listen", "127.0.0.1:0"])
        .args(["--wall-clock", "20251210-00:00:00"]);
    let sim = Serve::spawn(sim);
    let mut serve = ibconn_std_in(&dir);
    serve
        .args(["serve", "--gateway", &sim.addr, "--listen", "127.0.0.1:0"])
        .args(["--token", TOKEN]);
    let serve = Serve::spawn(serve);
    health_until(&serve.addr, Some(TOKEN), 200);
    let page = format!("http://{}/", serve.addr);
    let profile = dir.join("chromium-profile");

    // Without the token the page asks for it and shows no data.
    let locked = render(&bin, &profile, &page);
    assert_eq!(locked.state, "unauthorized", "{}", locked.dom);
    let form = tag_with(&locked.dom, "id=\"login\"").unwrap();
    assert!(
        !form.contains(" hidden"),
        "the token form is hidden: {form}"
    );

    // With it (the fragment a person can bookmark; the page moves it to sessionStorage).
    let with_token = format!("{page}#token={TOKEN}");
    let before = render_live(&bin, &profile, &with_token);
    let dom = &before.dom;
    let row = tag_with(dom, "class=\"conn\"").unwrap_or_else(|| panic!("no connection row\n{dom}"));
    let client_id: i32 = attr(row, "data-client-id").unwrap().parse().unwrap();
    assert!(client_id >= 0, "{row}");
    assert_eq!(attr(row, "data-state"), Some("ready"), "{row}");
    assert!(dom.contains("v226"), "no server version\n{dom}");
    assert!(
        dom.contains("data-kind=\"connected\""),
        "no connected event\n{dom}"
    );
    let h0 = gauge(dom, "historical");
    for name in ["open", "messages"] {
        gauge(dom, name);
    }
    assert!(
        tag_with(dom, "id=\"login\"").unwrap().contains(" hidden"),
        "the token form shows although the token was given"
    );

    // Another process fetches through the same gateway.
    let summary = dir.join("fetch.json");
    let fetch = assert_cmd::Command::from_std(ibconn_std_in(&dir))
        .args(["fetch", "AAPL", "--bar", "5s"])
        .args([
            "--from",
            "2025-12-01T14:00:00Z",
            "--to",
            "2025-12-01T16:00:00Z",
        ])
        .args(["--gateway", &sim.addr, "--out", "aapl.csv"])
        .arg("--summary-json")
        .arg(&summary)
        .timeout(Duration::from_secs(60))
        .assert();
    fetch.success();
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let requests = s["requests"].as_u64().unwrap();
    assert!(requests >= 1, "{s}");

    let after = render_live(&bin, &profile, &with_token);
    let h1 = gauge(&after.dom, "historical");
    assert!(
        h1 >= h0 + requests,
        "the historical gauge went {h0} -> {h1} after {requests} requests"
    );

    // A picture for people (README, review): the same page at a desktop size.
    let png = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    Browser::run(
        &bin,
        &profile,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,900".to_owned(),
        ],
        &with_token,
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "not a PNG: {}",
        png.display()
    );
    // A blank 1280x900 page compresses to a few KiB; a rendered one is far larger.
    assert!(bytes.len() > 30_000, "{} bytes: blank?", bytes.len());
    eprintln!(
        "browser test: {:.1} s, screenshot {}",
        started.elapsed().as_secs_f64(),
        png.display()
    );
}
