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

/// libwebp quality of every WebP we serve. Chosen with `cargo bench --bench
/// quality` (BENCHMARKS.md, "Bytes per picture"): made from the pixels, q78
/// is at every rendition size 28-33% smaller than our q82 JPEG at a mean SSIM
/// from 0.0046 below it (512 px) to 0.01 above it (64 px); q80 is only 22-24%
/// smaller up to 256 px.
pub const WEBP_QUALITY: u8 = 78;

fn encode_failed() -> ImagingError {
    ImagingError::Encode("the encoder rejected the image".to_owned())
}

/// Encodes a rendition: JPEG at `jpeg_quality` (configurable), WebP at
/// `WEBP_QUALITY`, PNG losslessly.
pub(crate) fn encode(
    raster: &Raster,
    format: ImageFormat,
    jpeg_quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    encode_at(raster, format, lossy_quality(format, jpeg_quality))
}

pub(crate) fn lossy_quality(format: ImageFormat, jpeg_quality: u8) -> u8 {
    match format {
        ImageFormat::Webp => WEBP_QUALITY,
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
/// JPEG is written at `jpeg_quality`, WebP at `WEBP_QUALITY`.
pub fn transcode(
    rendition: &[u8],
    format: ImageFormat,
    jpeg_quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    transcode_at(rendition, format, lossy_quality(format, jpeg_quality))
}

/// `transcode` with the quality of the lossy target (JPEG or WebP) given;
/// for measurements such as `benches/quality.rs`.
pub fn transcode_at(
    rendition: &[u8],
    format: ImageFormat,
    quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    guarded(|| {
        let source = sniff(rendition).ok_or_else(|| {
            ImagingError::InvalidFormat("not a supported image format".to_owned())
        })?;
        // Renditions are at most a few thousand pixels a side; the default
        // limits still apply in case something else is passed in.
        let image = decode_with_image(rendition, source, &Limits::default())?;
        encode_at(&Raster::from_dynamic(image)?, format, quality)
    })
}
