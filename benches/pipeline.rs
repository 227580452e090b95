//! Pipeline benchmark: `process()` on a 12 MP camera JPEG, single-threaded,
//! next to libvips' `vipsthumbnail` doing the equivalent work.
//!
//! Run with `cargo bench --bench pipeline`. Environment:
//! - `PIPELINE_BENCH_IMAGE`: image to use (default: the corpus' olympus_12mp.jpg)
//! - `PIPELINE_BENCH_RUNS`: timed runs (default 30, after 3 warm-ups)
//!
//! It also times `process()` making only a 64 px rendition: the JPEG is then decoded
//! at 1/8 scale and almost all of the time is its entropy (Huffman) decoding, which
//! no scale avoids. That row is the floor of the full run on the same machine at the
//! same moment, which helps on a VM whose speed drifts between runs.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use profile_image::imaging::{ImageFormat, Limits, RenditionSpec, placeholder, process};

/// The service's allocator (see src/main.rs), so the numbers are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WARMUPS: usize = 3;

struct Stats {
    p50: f64,
    p99: f64,
    min: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| {
        let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
        ms(samples[idx.min(samples.len() - 1)])
    };
    Stats {
        p50: pick(0.5),
        p99: pick(0.99),
        min: ms(samples[0]),
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn time_runs(runs: usize, mut once: impl FnMut() -> bool) -> Option<Vec<Duration>> {
    for _ in 0..WARMUPS {
        if !once() {
            return None;
        }
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        if !once() {
            return None;
        }
        samples.push(start.elapsed());
    }
    Some(samples)
}

/// One vipsthumbnail invocation per rendition: each decodes (with JPEG
/// shrink-on-load), centre-crops to a square and writes a Q85 JPEG, which is
/// what process() does for all renditions at once.
fn vips_once(vips: &str, image: &PathBuf, edges: &[u32], out_dir: &std::path::Path) -> bool {
    edges.iter().all(|edge| {
        let out = out_dir.join(format!("vips_{edge}.jpg[Q=85,strip]"));
        Command::new(vips)
            .arg(image)
            .args([
                "--size",
                &format!("{edge}x{edge}"),
                "--smartcrop",
                "centre",
                "-o",
            ])
            .arg(out)
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn main() {
    let image = std::env::var_os("PIPELINE_BENCH_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/corpus/camera/olympus_12mp.jpg"
            ))
        });
    let runs: usize = std::env::var("PIPELINE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .max(1);
    let bytes = match std::fs::read(&image) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", image.display());
            std::process::exit(1);
        }
    };
    let limits = Limits::default();
    let spec = RenditionSpec::default();

    let first = match process(&bytes, None, &limits, &spec) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("process() failed on {}: {e}", image.display());
            std::process::exit(1);
        }
    };
    let edges: Vec<u32> = first.renditions.iter().map(|r| r.edge).collect();
    println!(
        "image: {} ({} bytes, {}x{} upright), renditions {:?}, {} runs after {} warm-ups",
        image.display(),
        bytes.len(),
        first.width,
        first.height,
        edges,
        runs,
        WARMUPS
    );

    let ours = time_runs(runs, || process(&bytes, None, &limits, &spec).is_ok()).map(stats);
    let rss = peak_rss_kib();
    let floor_spec = RenditionSpec {
        sizes: vec![64],
        full_max_edge: 64,
        ..RenditionSpec::default()
    };
    let floor = time_runs(runs, || process(&bytes, None, &limits, &floor_spec).is_ok()).map(stats);

    let vips = ["vipsthumbnail"].into_iter().find(|v| {
        Command::new(v)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let out_dir = std::env::temp_dir();
    let theirs =
        vips.and_then(|v| time_runs(runs, || vips_once(v, &image, &edges, &out_dir)).map(stats));

    println!("{:<28} {:>9} {:>9} {:>9}", "", "p50 ms", "p99 ms", "min ms");
    match &ours {
        Some(s) => println!(
            "{:<28} {:>9.1} {:>9.1} {:>9.1}",
            "imaging::process (1 thread)", s.p50, s.p99, s.min
        ),
        None => println!("imaging::process failed during timing"),
    }
    if let Some(s) = &floor {
        println!(
            "{:<28} {:>9.1} {:>9.1} {:>9.1}",
            "process, 64 px only (floor)", s.p50, s.p99, s.min
        );
    }
    match (&theirs, vips) {
        (Some(s), _) => println!(
            "{:<28} {:>9.1} {:>9.1} {:>9.1}",
            format!("vipsthumbnail x{}", edges.len()),
            s.p50,
            s.p99,
            s.min
        ),
        (None, Some(_)) => println!("vipsthumbnail failed; comparison skipped"),
        (None, None) => println!(
            "vipsthumbnail not found (apt-get install -y libvips-tools); comparison skipped"
        ),
    }
    if let Some(s) = time_runs(runs, || {
        !placeholder("bench-user", 256, ImageFormat::Jpeg).is_empty()
    })
    .map(stats)
    {
        println!(
            "{:<28} {:>9.2} {:>9.2} {:>9.2}",
            "placeholder 256px JPEG", s.p50, s.p99, s.min
        );
    }
    match rss {
        Some(kib) => println!(
            "peak RSS (VmHWM) of this process: {:.1} MiB",
            kib as f64 / 1024.0
        ),
        None => println!("peak RSS unavailable (/proc/self/status not readable)"),
    }
}
