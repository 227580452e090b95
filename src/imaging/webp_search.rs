//! The WebP quality of each picture: the lowest quality whose SSIM against
//! the rendition's own pixels comes within a tolerance of the SSIM our JPEG
//! of the same pixels reaches.
//!
//! Why per picture: WebP's bytes relative to JPEG's at the same SSIM depend
//! on the content far more than on the size (BENCHMARKS.md, "Bytes per
//! picture"): a noisy phone photo costs JPEG many bytes for grain WebP
//! smooths, a smooth photo the reverse. One quality per size class either
//! lets some pictures look worse than their JPEG or leaves others far above
//! the bytes they need; no quality per size meets both bars on every photo.
//!
//! Why against the rendition's pixels: they are what both encoders are given,
//! and the only reference the service has. The bench's bars are against a
//! Lanczos resize of the original; the tolerance here is tuned so that the
//! bench's rows meet them.

use crate::imaging::decode::decode_with_image;
use crate::imaging::encode::webp_quality;
use crate::imaging::raster::Raster;
use crate::imaging::ssim::SsimReference;
use crate::imaging::{ImagingError, Limits, SourceFormat, libwebp, turbo};

/// How the search runs; `Default` is what the service uses, chosen with
/// `QUALITY_BENCH_PROXY_CSV` (BENCHMARKS.md, "Bytes per picture").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebpSearch {
    /// How far (in SSIM against the rendition's pixels) the WebP may fall
    /// below our JPEG of the same pixels. 0.003 against the pixels kept every
    /// bench row within 0.0035 of the JPEG against the reference (the bar is
    /// 0.005); 0.004 would cut 2% more bytes with a worst row at -0.0048.
    pub tolerance: f64,
    /// The search starts at the size class's quality (`webp_quality`) and
    /// goes at most this far below it...
    pub below_class: u8,
    /// ...and this far above it; pictures that do not reach the JPEG's SSIM
    /// by then get that top quality.
    pub above_class: u8,
    /// Encodes (each with a decode and an SSIM) at most: the first at the
    /// size class's quality, the rest bisect. The search stops sooner once
    /// it has narrowed down to one quality.
    pub max_probes: u8,
}

impl Default for WebpSearch {
    fn default() -> Self {
        WebpSearch {
            tolerance: 0.003,
            below_class: 10,
            above_class: 6,
            max_probes: 5,
        }
    }
}

impl WebpSearch {
    /// The qualities the search may choose for a picture whose size class
    /// has `class_quality`.
    fn range(&self, class_quality: u8) -> (u8, u8) {
        (
            class_quality.saturating_sub(self.below_class).max(1),
            class_quality.saturating_add(self.above_class).min(100),
        )
    }
}

/// Lossy WebP of `raster` at the lowest quality `search` finds whose SSIM
/// (against `raster`) is within `search.tolerance` of our JPEG at
/// `jpeg_quality`. Transparent pixels are compared as shown on white, the
/// way our JPEG shows them. Rasters smaller than the SSIM window get the size
/// class's quality.
pub(crate) fn encode_webp_like_jpeg(
    raster: &Raster,
    jpeg_quality: u8,
    search: &WebpSearch,
) -> Result<Vec<u8>, ImagingError> {
    let class_quality = webp_quality(raster.width.min(raster.height));
    let on_white = raster.clone().flatten_onto_white()?;
    let Some(reference) = SsimReference::new(&on_white.data, on_white.width, on_white.height)
    else {
        return libwebp::encode_lossy(raster, class_quality);
    };
    let jpeg = turbo::encode_rgb(&on_white, jpeg_quality)?;
    let target = decoded_ssim(&reference, &jpeg, SourceFormat::Jpeg)? - search.tolerance;
    let (min, max) = search.range(class_quality);
    let choice = lowest_passing(
        class_quality,
        (min, max),
        search.max_probes,
        target,
        |quality| {
            let webp = libwebp::encode_lossy(raster, quality)?;
            let ssim = decoded_ssim(&reference, &webp, SourceFormat::Webp)?;
            Ok((webp, ssim))
        },
    )?;
    match choice.encoded {
        Some(webp) => Ok(webp),
        None => libwebp::encode_lossy(raster, choice.quality),
    }
}

/// SSIM of an encoded picture, decoded as a browser would show it (on
/// white), against `reference`.
fn decoded_ssim(
    reference: &SsimReference,
    encoded: &[u8],
    format: SourceFormat,
) -> Result<f64, ImagingError> {
    let decoded = decode_with_image(encoded, format, &Limits::default())?;
    let on_white = Raster::from_dynamic_keep_alpha(decoded)?.flatten_onto_white()?;
    reference
        .ssim(&on_white.data)
        .ok_or_else(|| ImagingError::Encode("the encoder changed the picture's size".to_owned()))
}

/// The outcome of a search: the quality, and its encoding when a probe made it.
#[derive(Debug)]
struct Choice<T> {
    quality: u8,
    encoded: Option<T>,
}

/// The lowest quality in `min..=max` whose `probe` reaches `target`,
/// assuming SSIM grows with quality (it does, but for wiggles of ~0.001 on
/// tiny pictures: whatever is returned was probed and passed, or is the top
/// of the range). Probes `start` first (clamped into the range), then bisects
/// the side the answer is on, at most `max_probes` probes in all.
/// When no probe passes, the answer is the range's top, not yet encoded.
fn lowest_passing<T>(
    start: u8,
    (min, max): (u8, u8),
    max_probes: u8,
    target: f64,
    mut probe: impl FnMut(u8) -> Result<(T, f64), ImagingError>,
) -> Result<Choice<T>, ImagingError> {
    let max = max.max(min);
    // The answer lies in lo..=hi; `best` holds the probe at `hi` once one passed.
    let (mut lo, mut hi) = (min, max);
    let mut best: Option<T> = None;
    let mut next = start.clamp(min, max);
    for _ in 0..max_probes {
        let (encoded, ssim) = probe(next)?;
        if ssim >= target {
            hi = next;
            best = Some(encoded);
        } else {
            lo = next.saturating_add(1);
        }
        if lo >= hi {
            break;
        }
        next = lo + (hi - lo) / 2;
    }
    Ok(Choice {
        quality: hi,
        encoded: best,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::raster::Channels;

    /// Runs the search over a made-up SSIM curve, recording the probes.
    fn run(range: (u8, u8), probes: u8, start: u8, target: f64) -> (Choice<u8>, Vec<u8>) {
        let mut probed = Vec::new();
        let choice = lowest_passing(start, range, probes, target, |q| {
            probed.push(q);
            Ok((q, 0.9 + f64::from(q) / 1000.0))
        })
        .expect("search");
        (choice, probed)
    }

    #[test]
    fn finds_the_lowest_passing_quality_within_the_probe_budget() {
        // SSIM 0.9 + q/1000 reaches 0.9705 from q71 on.
        let (choice, probed) = run((60, 92), 6, 78, 0.9705);
        assert_eq!(choice.quality, 71);
        assert_eq!(choice.encoded, Some(71));
        assert!(probed.len() <= 6, "{probed:?}");
        assert_eq!(probed[0], 78);
    }

    #[test]
    fn stops_after_max_probes_with_a_quality_that_passed() {
        let (choice, probed) = run((60, 92), 3, 78, 0.9605);
        assert_eq!(probed.len(), 3);
        assert!(choice.quality >= 61 && probed.contains(&choice.quality));
        assert_eq!(choice.encoded, Some(choice.quality));
    }

    #[test]
    fn unreachable_target_ends_at_the_top_without_going_past_it() {
        let (choice, probed) = run((60, 92), 8, 78, 2.0);
        assert_eq!(choice.quality, 92);
        assert!(probed.iter().all(|&q| (60..=92).contains(&q)));
        // The top is encoded by the search itself or by the caller.
        assert!(choice.encoded.is_none() || probed.contains(&92));
    }

    #[test]
    fn the_range_stays_within_libwebps_qualities() {
        let search = WebpSearch::default();
        assert_eq!(search.range(78), (68, 84));
        assert_eq!(search.range(5), (1, 11));
        assert_eq!(search.range(98), (88, 100));
    }

    #[test]
    fn start_outside_the_range_is_clamped() {
        let (choice, probed) = run((70, 80), 5, 95, 0.0);
        assert_eq!(probed[0], 80);
        assert_eq!(choice.quality, 70);
    }

    fn textured(edge: u32) -> Raster {
        let data = (0..edge * edge)
            .flat_map(|i| {
                let (x, y) = (i % edge, i / edge);
                let grain = ((x * 7919 + y * 104_729) % 37) as u8;
                [
                    (x * 200 / edge) as u8 + grain,
                    (y * 200 / edge) as u8 + grain / 2,
                    90 + grain,
                ]
            })
            .collect();
        Raster::new(edge, edge, Channels::Rgb, data).expect("raster")
    }

    #[test]
    fn chosen_webp_reaches_the_jpegs_ssim_against_the_pixels() {
        let raster = textured(96);
        let search = WebpSearch::default();
        let webp = encode_webp_like_jpeg(&raster, 82, &search).expect("webp");
        let reference = SsimReference::new(&raster.data, 96, 96).expect("reference");
        let jpeg = turbo::encode_rgb(&raster, 82).expect("jpeg");
        let jpeg_ssim = decoded_ssim(&reference, &jpeg, SourceFormat::Jpeg).expect("ssim");
        let webp_ssim = decoded_ssim(&reference, &webp, SourceFormat::Webp).expect("ssim");
        assert!(
            webp_ssim >= jpeg_ssim - search.tolerance,
            "WebP {webp_ssim} JPEG {jpeg_ssim}"
        );
        // And it is no bigger than what the top of the range would give.
        let top_quality = search.range(webp_quality(96)).1;
        let top = libwebp::encode_lossy(&raster, top_quality).expect("top");
        assert!(webp.len() <= top.len());
    }
}
