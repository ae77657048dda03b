//! `--mode csv-export`: what one export of the members CSV costs the server. The workspace
//! is seeded through `tessera import` (`--members`, a third with an authenticator, plus one
//! admin who signs in); each run downloads `/admin/users.csv` whole and records when the
//! first byte came, when the last did, and the server's resident memory (`VmRSS` from
//! `/proc/<pid>/status`, sampled every millisecond) before, at its highest and after.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// One download of the export.
struct Export {
    first_byte_ms: f64,
    total_ms: f64,
    bytes: u64,
    lines: u64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    rss_after_kib: u64,
}

/// `repeat` downloads of the export, one after another, then the report.
pub async fn measure(
    base: &str,
    cookie: &str,
    pid: Option<u32>,
    repeat: usize,
    members: usize,
) -> anyhow::Result<serde_json::Value> {
    let pid = pid.context("csv-export mode needs the server's process id for its memory")?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut runs = Vec::new();
    for _ in 0..repeat.max(1) {
        // Let the previous export's buffers go back before the next "before".
        tokio::time::sleep(Duration::from_millis(500)).await;
        let run = one_export(&http, base, cookie, pid).await?;
        // The admin and every member, and the header.
        if run.lines != members as u64 + 2 {
            bail!(
                "the export had {} lines, not {} (header, admin, members)",
                run.lines,
                members + 2
            );
        }
        runs.push(run);
    }
    let med = |f: &dyn Fn(&Export) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        crate::median(&mut values)
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(serde_json::json!({
        "runs": runs.len(),
        "bytes": runs[0].bytes,
        "lines": runs[0].lines,
        "median": {
            "first_byte_ms": med(&|r| r.first_byte_ms),
            "total_ms": med(&|r| r.total_ms),
            "rss_before_mib": med(&|r| mib(r.rss_before_kib)),
            "rss_peak_mib": med(&|r| mib(r.rss_peak_kib)),
            "rss_after_mib": med(&|r| mib(r.rss_after_kib)),
            "rss_growth_mib": med(&|r| mib(r.rss_peak_kib.saturating_sub(r.rss_before_kib))),
        },
        "each": runs.iter().map(|r| serde_json::json!({
            "first_byte_ms": r.first_byte_ms,
            "total_ms": r.total_ms,
            "rss_before_mib": mib(r.rss_before_kib),
            "rss_peak_mib": mib(r.rss_peak_kib),
            "rss_after_mib": mib(r.rss_after_kib),
        })).collect::<Vec<_>>(),
    }))
}

async fn one_export(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    pid: u32,
) -> anyhow::Result<Export> {
    let rss = move || crate::status_kib(pid, "VmRSS").context("cannot read the server's VmRSS");
    let rss_before_kib = rss()?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(crate::status_kib(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(1));
            }
            peak
        })
    };
    let started = Instant::now();
    let mut response = http
        .get(format!("{base}/admin/users.csv"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::OK {
        bail!("GET /admin/users.csv answered {}", response.status());
    }
    let mut first_byte = None;
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = response.chunk().await? {
        first_byte.get_or_insert_with(|| started.elapsed());
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let total = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the memory sampler failed"))?;
    let rss_after_kib = rss()?;
    Ok(Export {
        first_byte_ms: crate::ms(first_byte.unwrap_or(total)),
        total_ms: crate::ms(total),
        bytes,
        lines,
        rss_before_kib,
        rss_peak_kib: peak.max(rss_before_kib).max(rss_after_kib),
        rss_after_kib,
    })
}

pub fn print_table(r: &serde_json::Value) {
    let num = |v: &serde_json::Value| v.as_f64().map_or("n/a".to_owned(), |n| format!("{n:.1}"));
    let m = &r["export"]["median"];
    println!();
    println!(
        "loadflow: csv-export on {}, {} members (a third with TOTP), median of {}{}",
        r["database"].as_str().unwrap_or(""),
        r["members"],
        r["export"]["runs"],
        if r["analyzed"].as_bool() == Some(true) {
            ", after ANALYZE"
        } else {
            ", straight after the import"
        }
    );
    let rows = [
        ("first byte (ms)", num(&m["first_byte_ms"])),
        ("whole export (ms)", num(&m["total_ms"])),
        (
            "bytes / lines",
            format!("{} / {}", r["export"]["bytes"], r["export"]["lines"]),
        ),
        (
            "server RSS before / peak / after (MiB)",
            format!(
                "{} / {} / {}",
                num(&m["rss_before_mib"]),
                num(&m["rss_peak_mib"]),
                num(&m["rss_after_mib"])
            ),
        ),
        (
            "server RSS growth, peak - before (MiB)",
            num(&m["rss_growth_mib"]),
        ),
        (
            "members seeded (import seconds)",
            format!("{} ({})", r["members"], num(&r["seed_seconds"])),
        ),
    ];
    for (label, value) in rows {
        println!("  {label:<48} {value}");
    }
    println!();
}
