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
use crate::imaging::{ImageFormat, ImagingError, Limits};
use crate::imaging::{libwebp, turbo};

/// libwebp quality of a WebP rendition `edge` px wide (its actual edge: a
/// rendition capped at a 300 px crop counts with the 256 px ones).
///
/// Chosen with `cargo bench --bench quality` (BENCHMARKS.md, "Bytes per
/// picture") per size class, because one quality does not fit all sizes: the
/// same photo loses more SSIM to WebP than to our q82 JPEG as renditions grow
/// (4x4 transforms and the loop filter smooth the fine texture a 512 px avatar
/// still shows; at 64 px little of it is left). Each class gets the lowest
/// quality whose SSIM, and that of the quality one above it (SSIM is not
/// monotonic in quality on tiny pictures), stays within 0.005 of our JPEG's on
/// every photo of the bench. The SSIM tolerance comes first, so a WebP never
/// looks worse than the JPEG it stands in for; the bytes bar (at most 0.75 of
/// the JPEG's) is then missed on some rows: the noisy iPhone photo keeps
/// 0.77-0.91 of its JPEG's bytes (at up to +0.015 SSIM), and at 256-512 px
/// two more photos 0.756-0.770. No quality per size meets both bars on every
/// row: at 256 px the iPhone photo reaches 0.75 only below q72, where the cat
/// (chelsea.png) is 0.02 SSIM below its JPEG. Above 512 px (not measured) the
/// 512 px quality applies.
pub fn webp_quality(edge: u32) -> u8 {
    match edge {
        0..96 => 76,
        96..192 => 78,
        192..384 => 79,
        _ => 81,
    }
}

fn encode_failed() -> ImagingError {
    ImagingError::Encode("the encoder rejected the image".to_owned())
}

/// Encodes a rendition: JPEG at `jpeg_quality` (configurable), WebP at
/// `webp_quality` for its size, PNG losslessly.
pub(crate) fn encode(
    raster: &Raster,
    format: ImageFormat,
    jpeg_quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    let quality = lossy_quality(format, jpeg_quality, raster.width.min(raster.height));
    encode_at(raster, format, quality)
}

/// The quality the service encodes a rendition `edge` px wide with in `format`.
pub(crate) fn lossy_quality(format: ImageFormat, jpeg_quality: u8, edge: u32) -> u8 {
    match format {
        ImageFormat::Webp => webp_quality(edge),
        ImageFormat::Jpeg | ImageFormat::Png => jpeg_quality,
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
/// JPEG is written at `jpeg_quality`, WebP at `webp_quality` for its size.
pub fn transcode(
    rendition: &[u8],
    format: ImageFormat,
    jpeg_quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    transcode_with(rendition, format, |edge| {
        lossy_quality(format, jpeg_quality, edge)
    })
}

/// `transcode` with the quality of the lossy target (JPEG or WebP) given;
/// for measurements such as `benches/quality.rs`.
pub fn transcode_at(
    rendition: &[u8],
    format: ImageFormat,
    quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    transcode_with(rendition, format, |_| quality)
}

fn transcode_with(
    rendition: &[u8],
    format: ImageFormat,
    quality_for_edge: impl FnOnce(u32) -> u8,
) -> Result<Vec<u8>, ImagingError> {
    guarded(|| {
        let source = sniff(rendition).ok_or_else(|| {
            ImagingError::InvalidFormat("not a supported image format".to_owned())
        })?;
        // Renditions are at most a few thousand pixels a side; the default
        // limits still apply in case something else is passed in.
        let image = decode_with_image(rendition, source, &Limits::default())?;
        let raster = Raster::from_dynamic(image)?;
        let quality = quality_for_edge(raster.width.min(raster.height));
        encode_at(&raster, format, quality)
    })
}
