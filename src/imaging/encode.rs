//! Fresh encodes of our own pixels. Nothing from the upload's metadata
//! (EXIF, GPS, XMP, ICC, comments) is ever handed to an encoder, so none of
//! it can leak into what we serve. Pixels with an ICC profile were converted
//! to sRGB before resizing (`colour.rs`), so dropping the profile keeps their
//! colours.

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

use crate::imaging::decode::{decode_with_image, guarded};
use crate::imaging::raster::{Channels, Raster};
use crate::imaging::sniff::sniff;
use crate::imaging::webp_search::{WebpSearch, encode_webp_like_jpeg};
use crate::imaging::{ImageFormat, ImagingError, Limits};
use crate::imaging::{libwebp, turbo};

/// libwebp quality of a WebP rendition `edge` px wide (its actual edge: a
/// rendition capped at a 300 px crop counts with the 256 px ones), before the
/// per-picture search (`QualityChoice::Service`) moves it: the search's first
/// probe, and the quality of `QualityChoice::BySize`.
///
/// Chosen with `cargo bench --bench quality` (BENCHMARKS.md, "Bytes per
/// picture") per size class: the lowest quality whose SSIM, and that of the
/// quality one above it, stays within 0.005 of our JPEG's on every photo of
/// the bench. As the only rule it missed the bytes bar (at most 0.75 of the
/// JPEG's) on 8 of 36 rows: no quality per size fits every photo, because
/// WebP's advantage depends on the content (the noisy iPhone photo reached
/// 0.75 only below q72 at 256 px, where the cat is 0.02 SSIM below its JPEG).
/// As the search's start it is where most pictures' answer lies near.
pub fn webp_quality(edge: u32) -> u8 {
    match edge {
        0..96 => 76,
        96..192 => 78,
        192..384 => 79,
        _ => 81,
    }
}

/// How the quality of a lossy rendition is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QualityChoice {
    /// The service's: JPEG at the configured quality; WebP per picture, the
    /// lowest quality that comes as close to that JPEG's SSIM as
    /// `WebpSearch::default()` asks.
    Service,
    /// Like `Service`, with the WebP search set otherwise (for measurements).
    WebpSearch(WebpSearch),
    /// WebP at `webp_quality` for its size, without a search (the rule before
    /// the search; for measurements); JPEG at the configured quality.
    BySize,
    /// This quality for whichever lossy format (for measurements).
    Fixed(u8),
}

fn encode_failed() -> ImagingError {
    ImagingError::Encode("the encoder rejected the image".to_owned())
}

/// Encodes a rendition: JPEG at `jpeg_quality` (configurable), WebP at the
/// quality `choice` gives, PNG losslessly.
pub(crate) fn encode(
    raster: &Raster,
    format: ImageFormat,
    jpeg_quality: u8,
    choice: QualityChoice,
) -> Result<Vec<u8>, ImagingError> {
    let edge = raster.width.min(raster.height);
    match (format, choice) {
        (_, QualityChoice::Fixed(quality)) => encode_at(raster, format, quality),
        (ImageFormat::Webp, QualityChoice::BySize) => encode_at(raster, format, webp_quality(edge)),
        (ImageFormat::Webp, QualityChoice::Service) => {
            encode_webp_like_jpeg(raster, jpeg_quality, &WebpSearch::default())
        }
        (ImageFormat::Webp, QualityChoice::WebpSearch(search)) => {
            encode_webp_like_jpeg(raster, jpeg_quality, &search)
        }
        (ImageFormat::Jpeg | ImageFormat::Png, _) => encode_at(raster, format, jpeg_quality),
    }
}

/// Encodes with `quality` for the lossy formats (ignored for PNG).
pub(crate) fn encode_at(
    raster: &Raster,
    format: ImageFormat,
    quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    match format {
        ImageFormat::Jpeg if raster.channels == Channels::Rgba => {
            turbo::encode_rgb(&raster.clone().flatten_onto_white()?, quality)
        }
        ImageFormat::Jpeg => turbo::encode_rgb(raster, quality),
        ImageFormat::Png => encode_png(raster),
        ImageFormat::Webp => libwebp::encode_lossy(raster, quality),
    }
}

fn extended_color(channels: Channels) -> ExtendedColorType {
    match channels {
        Channels::Rgb => ExtendedColorType::Rgb8,
        Channels::Rgba => ExtendedColorType::Rgba8,
    }
}

/// `Fast` is fdeflate, made for image data: on photos/astronaut_circle.png's four
/// renditions it took 14 ms against 159 ms for `Default` (zlib level 6), and the files
/// came out 2% smaller.
fn encode_png(raster: &Raster) -> Result<Vec<u8>, ImagingError> {
    let mut out = Vec::new();
    let encoder =
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive);
    write_raster(encoder, raster)?;
    Ok(out)
}

fn write_raster(encoder: impl ImageEncoder, raster: &Raster) -> Result<(), ImagingError> {
    encoder
        .write_image(
            &raster.data,
            raster.width,
            raster.height,
            extended_color(raster.channels),
        )
        .map_err(|_| encode_failed())
}

/// Re-encodes one of our stored renditions into another output format.
/// Transparency survives into PNG/WebP; JPEG gets it composited onto white.
/// JPEG is written at `jpeg_quality`, WebP at its size class's quality
/// (`webp_quality`): the per-picture search would compare WebP with a JPEG
/// of pixels that are already a lossy rendition's, and asks for far more
/// bytes than either needs. The service makes WebP from the original
/// (`imaging::render`), never by transcoding.
pub fn transcode(
    rendition: &[u8],
    format: ImageFormat,
    jpeg_quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    transcode_with(rendition, format, jpeg_quality, QualityChoice::BySize)
}

/// `transcode` with the quality of the lossy target (JPEG or WebP) given;
/// for measurements such as `benches/quality.rs`.
pub fn transcode_at(
    rendition: &[u8],
    format: ImageFormat,
    quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    transcode_with(rendition, format, quality, QualityChoice::Fixed(quality))
}

fn transcode_with(
    rendition: &[u8],
    format: ImageFormat,
    jpeg_quality: u8,
    choice: QualityChoice,
) -> Result<Vec<u8>, ImagingError> {
    guarded(|| {
        let source = sniff(rendition).ok_or_else(|| {
            ImagingError::InvalidFormat("not a supported image format".to_owned())
        })?;
        // Renditions are at most a few thousand pixels a side; the default
        // limits still apply in case something else is passed in.
        let image = decode_with_image(rendition, source, &Limits::default())?;
        let raster = Raster::from_dynamic(image)?;
        encode(&raster, format, jpeg_quality, choice)
    })
}
