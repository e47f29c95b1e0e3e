//! A media pipeline: download → transcode three variants in parallel
//! (`Stent::gather`) → thumbnail → publish.
//!
//! It shows three failure-and-reuse features:
//!
//! * **Retries with backoff.** The download fails twice with a transient
//!   error; its `retry_policy` retries it after 200 ms, then 400 ms (the
//!   delay is the task's scheduled time: no worker sleeps meanwhile).
//! * **Dead letters.** The thumbnailer has a bug and panics on every
//!   attempt; after its two attempts it is dead-lettered and the workflow
//!   waits. The program "deploys a fix" ([`deploy_thumbnail_fix`]) and calls
//!   `replay_dead_letter`: the thumbnail runs again and the workflow
//!   continues from where it stopped — the download and the transcodes are
//!   not repeated.
//! * **Caching.** `transcode` is `#[durable(cached)]`: running the pipeline a
//!   second time on the same input answers the three transcodes from the
//!   cache (journaled as `cache_hit`, shown by `state_of(..).progress`).
//!
//! ```sh
//! cargo run -p stent-examples --example media_pipeline
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stent::{ExecutionId, RetryPolicy, Stent};

use crate::support::{LocalWorker, print_calls};

/// The variants every video is transcoded to.
pub const VARIANTS: [&str; 3] = ["1080p", "720p", "480p"];

/// A downloaded source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Where it came from: `channel/video`.
    pub path: String,
    /// Its content hash (what the transcode cache is keyed by, with the
    /// variant).
    pub checksum: String,
    /// Its size.
    pub bytes: u64,
}

/// One transcoded variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendition {
    /// `1080p`, `720p`, …
    pub variant: String,
    /// Where it was written.
    pub path: String,
    /// Its size.
    pub bytes: u64,
}

/// A published video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Public URL.
    pub url: String,
    /// The variants available.
    pub renditions: Vec<Rendition>,
    /// The thumbnail's path.
    pub thumbnail: String,
}

/// Why a stage failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaError {
    /// Worth retrying.
    Transient(String),
    /// Not worth retrying.
    Permanent(String),
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaError::Transient(m) => write!(f, "transient: {m}"),
            MediaError::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

impl std::error::Error for MediaError {}

// ---------------------------------------------------------------------------
// Process-local bookkeeping: how often each stage's body ran (keyed by the
// source path), and which channels got the thumbnail fix.

static RUNS: Mutex<BTreeMap<(String, &'static str), u32>> = Mutex::new(BTreeMap::new());
static FIXED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn count_run(path: &str, stage: &'static str) -> u32 {
    let mut runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let n = runs.entry((path.to_string(), stage)).or_insert(0);
    *n += 1;
    *n
}

/// How many times the body of `stage` (`"download"`, `"transcode"`,
/// `"thumbnail"`, `"publish"`) ran for `channel/video` in this process.
///
/// ```
/// assert_eq!(stent_examples::media_pipeline::stage_runs("c", "v.mov", "download"), 0);
/// ```
pub fn stage_runs(channel: &str, video: &str, stage: &str) -> u32 {
    let runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    runs.iter()
        .filter(|((p, s), _)| *p == format!("{channel}/{video}") && *s == stage)
        .map(|(_, n)| *n)
        .sum()
}

/// "Deploys" the thumbnailer fix for `channel`: from now on its thumbnails
/// render instead of panicking.
///
/// ```
/// stent_examples::media_pipeline::deploy_thumbnail_fix("doc-channel");
/// ```
pub fn deploy_thumbnail_fix(channel: &str) {
    FIXED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(channel.to_string());
}

fn is_fixed(channel: &str) -> bool {
    FIXED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(channel)
}

fn checksum(s: &str) -> String {
    // FNV-1a: a stable stand-in for a real content hash.
    let hash = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn download_policy() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(4)
        .initial_delay(Duration::from_millis(200))
        .backoff_factor(2.0)
        .retry_for(|e: &MediaError| matches!(e, MediaError::Transient(_)))
}

fn thumbnail_policy() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(2)
        .initial_delay(Duration::from_millis(100))
}

// ---------------------------------------------------------------------------
// The stages.

/// Downloads `video` of `channel`. The CDN times out on the first two
/// attempts of each video; the retry policy takes care of it.
#[stent::durable(retry_policy = download_policy())]
pub async fn download(channel: String, video: String) -> Result<Source, MediaError> {
    let path = format!("{channel}/{video}");
    let attempt = count_run(&path, "download");
    if attempt <= 2 {
        println!(
            "  download {video}: CDN request #{attempt} timed out (transient: retried with backoff)"
        );
        return Err(MediaError::Transient("CDN timeout".into()));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("  download {video}: ok (CDN request #{attempt})");
    Ok(Source {
        checksum: checksum(&path),
        path,
        bytes: 734_003_200,
    })
}

/// Transcodes `source` to `variant` (300 ms of simulated work). Cached:
/// the same source and variant are transcoded once, whatever the execution.
#[stent::durable(cached)]
pub async fn transcode(source: Source, variant: String) -> Result<Rendition, MediaError> {
    count_run(&source.path, "transcode");
    println!("  transcode {} -> {variant}: working", source.path);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let factor = match variant.as_str() {
        "1080p" => 4,
        "720p" => 8,
        _ => 16,
    };
    Ok(Rendition {
        path: format!("renditions/{}-{variant}.mp4", source.checksum),
        variant,
        bytes: source.bytes / factor,
    })
}

/// Renders the thumbnail. Panics (a bug) until [`deploy_thumbnail_fix`] is
/// called for the channel; after its two attempts it is dead-lettered.
#[stent::durable(retry_policy = thumbnail_policy())]
pub async fn thumbnail(channel: String, source: Source) -> Result<String, MediaError> {
    let attempt = count_run(&source.path, "thumbnail");
    if !is_fixed(&channel) {
        println!("  thumbnail {}: render #{attempt} crashes", source.path);
        panic!(
            "thumbnailer bug: unsupported color space in {}",
            source.path
        );
    }
    println!("  thumbnail {}: rendered (render #{attempt})", source.path);
    Ok(format!("thumbnails/{}.jpg", source.checksum))
}

/// Publishes the renditions and the thumbnail.
#[stent::durable]
pub async fn publish(
    source: Source,
    renditions: Vec<Rendition>,
    thumbnail: String,
) -> Result<Published, MediaError> {
    count_run(&source.path, "publish");
    let url = format!("https://videos.example/{}", source.path);
    println!("  publish {}: live at {url}", source.path);
    Ok(Published {
        url,
        renditions,
        thumbnail,
    })
}

/// The workflow: download → transcodes in parallel → thumbnail → publish.
/// The custom state `stage` says where it is.
#[stent::durable]
pub async fn media_pipeline(channel: String, video: String) -> Result<Published, MediaError> {
    let ctx = Stent::context().map_err(|e| MediaError::Permanent(e.to_string()))?;
    let stage = |s: &str| {
        ctx.state("stage")
            .set(s)
            .map_err(|e| MediaError::Permanent(e.to_string()))
    };
    stage("download")?;
    let source = download(channel.clone(), video).await?;
    stage("transcode")?;
    let outcomes = Stent::gather(
        VARIANTS
            .iter()
            .map(|v| transcode(source.clone(), v.to_string())),
    )
    .await;
    let renditions = outcomes.into_iter().collect::<Result<Vec<_>, _>>()?;
    stage("thumbnail")?;
    let thumb = thumbnail(channel, source.clone()).await?;
    stage("publish")?;
    publish(source, renditions, thumb).await
}

/// What [`run`] observed.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaReport {
    /// The first run's result (after the dead letter was replayed).
    pub first: Published,
    /// The second run's result.
    pub second: Published,
    /// The dead letter's reason.
    pub dead_letter_reason: String,
    /// The stage the first run was in when its thumbnail was dead-lettered.
    pub stage_at_dead_letter: Option<String>,
    /// Retries of the first run (download and thumbnail).
    pub first_retries: u32,
    /// Calls of the second run answered from the cache.
    pub second_cache_hits: usize,
    /// Bodies run per stage in this process, over both runs:
    /// `(download, transcode, thumbnail, publish)`.
    pub stage_runs: (u32, u32, u32, u32),
}

async fn wait_for_dead_letter(
    executor: &Stent,
    id: ExecutionId,
) -> crate::Result<stent::records::DeadLetterRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let letters = executor.list_dead_letters(100).await?;
        if let Some(letter) = letters.into_iter().find(|l| l.execution == id) {
            return Ok(letter);
        }
        let state = executor.state_of(id).await?;
        if state.state.is_terminal() {
            return Err(format!("execution ended ({}) without a dead letter", state.state).into());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("no dead letter after 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the example on `channel/video`: the first run retries its download,
/// dead-letters its thumbnail, gets fixed and replayed; the second run of
/// the same input is answered from the transcode cache.
pub async fn run(executor: &Stent, channel: &str, video: &str) -> crate::Result<MediaReport> {
    let worker = LocalWorker::start(executor, |w| w).await;
    let runs = |stage| stage_runs(channel, video, stage);

    println!("run 1: {channel}/{video}");
    let id = executor
        .dispatch(media_pipeline(channel.into(), video.into()))
        .await?;
    let letter = wait_for_dead_letter(executor, id).await?;
    let state = executor.state_of(id).await?;
    let stage_at_dead_letter: Option<String> = state.custom_state_as("stage")?;
    println!(
        "dead letter: {} after {} retries: {}",
        crate::support::short_name(&letter.function),
        letter.retries,
        letter.reason
    );
    println!(
        "  the execution is {} at stage {:?}, {}",
        state.state,
        stage_at_dead_letter.as_deref().unwrap_or("?"),
        state.progress_str
    );
    println!("deploying the thumbnailer fix and replaying the dead letter");
    deploy_thumbnail_fix(channel);
    executor.replay_dead_letter(letter.task, None, true).await?;
    let first = executor
        .wait_for::<Published, MediaError>(id, Some(Duration::from_secs(60)))
        .await??;
    let first_retries = executor.state_of(id).await?.retries;
    println!(
        "run 1 published {} ({} retries); bodies run so far: download {}, transcode {}, thumbnail {}, publish {}",
        first.url,
        first_retries,
        runs("download"),
        runs("transcode"),
        runs("thumbnail"),
        runs("publish")
    );
    let first_calls = print_calls(executor, id, &[]).await?;

    println!();
    println!("run 2: the same input again");
    let id2 = executor
        .dispatch(media_pipeline(channel.into(), video.into()))
        .await?;
    let second = executor
        .wait_for::<Published, MediaError>(id2, Some(Duration::from_secs(60)))
        .await??;
    let state2 = executor.state_of(id2).await?;
    let second_cache_hits = state2.progress.iter().filter(|c| c.cached).count();
    println!(
        "run 2 published {}: {} calls answered from the cache; transcode bodies run in total: {}",
        second.url,
        second_cache_hits,
        runs("transcode")
    );
    print_calls(executor, id2, &first_calls).await?;

    worker.stop().await?;
    Ok(MediaReport {
        first,
        second,
        dead_letter_reason: letter.reason,
        stage_at_dead_letter,
        first_retries,
        second_cache_hits,
        stage_runs: (
            runs("download"),
            runs("transcode"),
            runs("thumbnail"),
            runs("publish"),
        ),
    })
}
