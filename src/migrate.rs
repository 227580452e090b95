//! `profile-image migrate`: the command around `store::transfer`, with progress on
//! stderr.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use profile_image::config::{Config, Overrides};
use profile_image::store::local::LocalStore;
use profile_image::store::postgres::PostgresStore;
use profile_image::store::s3::S3Blobs;
use profile_image::store::transfer::{Progress, copy_local_to_shared};

/// Progress lines at most this often (and one at the end).
const REPORT_EVERY: Duration = Duration::from_secs(1);

pub fn run(overrides: Overrides) -> ExitCode {
    let config = match Config::resolve(None, overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("profile-image migrate: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("profile-image migrate: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(migrate(&config)) {
        Ok(done) => {
            eprintln!(
                "profile-image migrate: done: {} media items copied, {} already there, \
                 {} blobs copied, {} users",
                done.media_copied, done.media_skipped, done.blobs_copied, done.users_copied
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("profile-image migrate: {error} (run the command again to resume)");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &Config) -> Result<Progress, Box<dyn std::error::Error>> {
    let shared = config
        .shared_store()
        .ok_or("--to-store and --to-blobs are both needed")?;
    if !config.data_dir.join("db").exists() && !config.data_dir.join("conf").exists() {
        return Err(format!("{} is not a data dir", config.data_dir.display()).into());
    }
    let data_dir = config.data_dir.clone();
    let local = tokio::task::spawn_blocking(move || LocalStore::open(&data_dir)).await??;
    let meta = PostgresStore::connect(&shared.postgres_url, &shared.postgres).await?;
    let blobs = S3Blobs::open(&shared.s3)?;
    let started = Instant::now();
    let last_report = std::sync::Mutex::new(Instant::now());
    let report = |p: &Progress| {
        let Ok(mut last) = last_report.lock() else {
            return;
        };
        if last.elapsed() >= REPORT_EVERY {
            *last = Instant::now();
            eprintln!(
                "profile-image migrate: media {}/{} ({} already there), blobs {}, users {}/{}, {:.0?}",
                p.media_copied + p.media_skipped,
                p.media_total,
                p.media_skipped,
                p.blobs_copied,
                p.users_copied,
                p.users_total,
                started.elapsed()
            );
        }
    };
    Ok(copy_local_to_shared(&local, &meta, &blobs, report).await?)
}
