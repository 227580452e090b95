//! Which rendition answers a Get.

use crate::model::{ImageFormat, Media, Rendition};

/// The edge a request for `requested` px is served at before capping by the source:
/// 0 = the full image (`full_max_edge`), otherwise the nearest configured size at or
/// above the request (the largest when the request is larger than all).
pub fn target_edge(requested: u32, sizes: &[u32], full_max_edge: u32) -> u32 {
    if requested == 0 {
        return full_max_edge;
    }
    sizes
        .iter()
        .copied()
        .find(|&s| s >= requested)
        .or_else(|| sizes.iter().copied().max())
        .unwrap_or(full_max_edge)
}

/// The stored default-format rendition for a target edge: the smallest at or above it,
/// else the largest there is (the source is smaller than the target: never upscale).
pub fn pick_default(media: &Media, target: u32) -> Option<&Rendition> {
    let default = media.default_format();
    let mut candidates: Vec<&Rendition> = media
        .renditions
        .iter()
        .filter(|r| r.format == default)
        .collect();
    candidates.sort_by_key(|r| r.edge);
    candidates
        .iter()
        .find(|r| r.edge >= target)
        .or(candidates.last())
        .copied()
}

/// A stored rendition of exactly this edge and format, if one was made.
pub fn find(media: &Media, edge: u32, format: ImageFormat) -> Option<&Rendition> {
    media
        .renditions
        .iter()
        .find(|r| r.edge == edge && r.format == format)
}
