//! Generated default avatar: a head-and-shoulders silhouette on a background
//! colour that is stable per seed (user id), so a user keeps "their" colour
//! until they upload a picture.

use crate::imaging::ImageFormat;
use crate::imaging::encode::{QualityChoice, encode};
use crate::imaging::raster::{Channels, Raster};

/// Placeholders are requested by URL; this bounds the work a caller can ask for.
const MAX_PLACEHOLDER_EDGE: u32 = 2048;
const PLACEHOLDER_JPEG_QUALITY: u8 = 90;

/// FNV-1a: tiny and, unlike `DefaultHasher`, guaranteed stable across Rust
/// releases, so colours do not change when the service is rebuilt.
fn fnv1a(seed: &str) -> u64 {
    seed.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Muted colour at a seed-chosen hue: saturated enough to tell users apart,
/// dark enough for the light silhouette to read.
fn background(seed: &str) -> [f32; 3] {
    let hash = fnv1a(seed);
    let hue = (hash % 360) as f32;
    let (s, l) = (0.45f32, 0.42f32);
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let m = l - c / 2.0;
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

/// Signed distance (in pixels, negative inside) to an axis-aligned ellipse;
/// an approximation, but exact enough for one pixel of anti-aliasing.
fn ellipse_distance(px: f32, py: f32, cx: f32, cy: f32, rx: f32, ry: f32) -> f32 {
    let (dx, dy) = ((px - cx) / rx, (py - cy) / ry);
    ((dx * dx + dy * dy).sqrt() - 1.0) * rx.min(ry)
}

pub fn placeholder(seed: &str, edge: u32, format: ImageFormat) -> Vec<u8> {
    let edge = edge.clamp(1, MAX_PLACEHOLDER_EDGE);
    let e = edge as f32;
    let bg = background(seed);
    let fg = bg.map(|c| c + (255.0 - c) * 0.6);
    let mut data = Vec::with_capacity((edge * edge * 3) as usize);
    for y in 0..edge {
        let py = y as f32 + 0.5;
        for x in 0..edge {
            let px = x as f32 + 0.5;
            let head = ellipse_distance(px, py, 0.5 * e, 0.39 * e, 0.17 * e, 0.17 * e);
            let body = ellipse_distance(px, py, 0.5 * e, 0.95 * e, 0.33 * e, 0.31 * e);
            let coverage = (0.5 - head.min(body)).clamp(0.0, 1.0);
            for ch in 0..3 {
                data.push((bg[ch] + (fg[ch] - bg[ch]) * coverage + 0.5) as u8);
            }
        }
    }
    let raster = Raster {
        width: edge,
        height: edge,
        channels: Channels::Rgb,
        data,
    };
    // The raster is well-formed and within every encoder's size limits, so
    // encoding cannot fail in practice; an empty body is the least harmful
    // answer if it ever did. A WebP placeholder takes its size's quality: a
    // flat drawing needs no search.
    encode(
        &raster,
        format,
        PLACEHOLDER_JPEG_QUALITY,
        QualityChoice::BySize,
    )
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::{SourceFormat, sniff};
    use std::time::Instant;

    #[test]
    fn deterministic_and_fast() {
        let a = placeholder("user-42", 256, ImageFormat::Jpeg);
        let b = placeholder("user-42", 256, ImageFormat::Jpeg);
        let c = placeholder("user-43", 256, ImageFormat::Jpeg);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(sniff(&a), Some(SourceFormat::Jpeg));
        assert_eq!(
            sniff(&placeholder("x", 64, ImageFormat::Png)),
            Some(SourceFormat::Png)
        );
        assert_eq!(
            sniff(&placeholder("x", 64, ImageFormat::Webp)),
            Some(SourceFormat::Webp)
        );
        assert!(!placeholder("x", 0, ImageFormat::Png).is_empty());
        // Debug builds are ~10x slower than release; the 5 ms budget is
        // checked by the release bench, this only catches pathologies.
        let start = Instant::now();
        let _ = placeholder("timing", 256, ImageFormat::Jpeg);
        assert!(start.elapsed().as_millis() < 200);
    }
}
