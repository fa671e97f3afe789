//! A/B: Client::connect of two versions of ibconn-tokio (see README.md), in the
//! same process, interleaved per round (order alternating), against one ibconn-sim process.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

fn median(v: &mut Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut child = Command::new(
        std::env::var("IBCONN_SIM_BIN").unwrap_or_else(|_| "target/release/ibconn-sim".into()),
    )
    .args(["--listen", "127.0.0.1:0"])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find(|w| w.contains("127.0.0.1:"))
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .to_string();
    eprintln!("sim at {addr}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        let mut id = 100;
        for r in 0..rounds + 20 {
            let mut t = [0.0f64; 2];
            for k in 0..2 {
                let which = (k + r) % 2;
                id += 1;
                let t0 = Instant::now();
                if which == 0 {
                    let c = old::Client::connect(&addr, id).await.unwrap();
                    t[0] = t0.elapsed().as_secs_f64() * 1e6;
                    c.shutdown().await;
                } else {
                    let c = new::Client::connect(&addr, id).await.unwrap();
                    t[1] = t0.elapsed().as_secs_f64() * 1e6;
                    c.shutdown().await;
                }
            }
            if r >= 20 {
                a.push(t[0]);
                b.push(t[1]);
                ratios.push(t[1] / t[0]);
            }
        }
    });
    let _ = child.kill();
    println!(
        "rounds {rounds}: before {:.1} µs, after {:.1} µs, median per-round after/before {:.3}",
        median(&mut a),
        median(&mut b),
        median(&mut ratios)
    );
}
