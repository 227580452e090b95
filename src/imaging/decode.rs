//! Pixel decoding. JPEG gets a dedicated path because camera photos are the
//! bulk of uploads and dominate latency; everything else goes through
//! `image` with hard allocation limits.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::DynamicImage;
use image::ImageDecoder;
use image::codecs::gif::GifDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use crate::imaging::crop::CropRect;
use crate::imaging::header::Header;
use crate::imaging::raster::{Channels, Raster};
use crate::imaging::{ImagingError, Limits, SourceFormat};

/// Decoded pixels still in stored orientation, possibly reduced in size.
pub(crate) struct Decoded {
    pub raster: Raster,
    /// Stored pixels per decoded pixel along each axis (1, 2, 4 or 8).
    pub scale: u32,
}

/// Decoders are large bodies of parsing code fed with hostile bytes; a panic
/// in any of them must become an ordinary rejection of that one upload.
pub(crate) fn guarded<T>(
    work: impl FnOnce() -> Result<T, ImagingError>,
) -> Result<T, ImagingError> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| Err(ImagingError::corrupt()))
}

/// Decodes `bytes`. `stored_crop` and `needed_edge` let JPEG decoding skip
/// detail that the largest rendition would throw away anyway.
pub(crate) fn decode(
    bytes: &[u8],
    format: SourceFormat,
    header: &Header,
    stored_crop: &CropRect,
    needed_edge: u32,
    limits: &Limits,
) -> Result<Decoded, ImagingError> {
    match format {
        SourceFormat::Jpeg => decode_jpeg(bytes, header, stored_crop, needed_edge, limits),
        other => Ok(Decoded {
            raster: Raster::from_dynamic(decode_with_image(bytes, other, limits)?)?,
            scale: 1,
        }),
    }
}

/// Largest DCT scaling denominator that still leaves the crop at least
/// `needed_edge` pixels wide, so the final resize only ever shrinks.
pub(crate) fn jpeg_scale(crop_size: u32, needed_edge: u32) -> u32 {
    [8u32, 4, 2]
        .into_iter()
        .find(|&s| u64::from(crop_size) >= u64::from(needed_edge) * u64::from(s))
        .unwrap_or(1)
}

fn decode_jpeg(
    bytes: &[u8],
    header: &Header,
    stored_crop: &CropRect,
    needed_edge: u32,
    limits: &Limits,
) -> Result<Decoded, ImagingError> {
    let scale = jpeg_scale(stored_crop.size(), needed_edge);
    if scale > 1 {
        // Any refusal from the scaling decoder (unusual colour model,
        // quirks it is stricter about) falls through to the full decoder.
        if let Some(raster) = decode_jpeg_scaled(bytes, header, scale, limits) {
            return Ok(Decoded { raster, scale });
        }
    }
    Ok(Decoded {
        raster: decode_jpeg_full(bytes, limits)?,
        scale: 1,
    })
}

/// jpeg-decoder can run a reduced-size IDCT (1/2, 1/4, 1/8), which for a
/// 12 MP photo saves most of the IDCT, upsampling and colour-conversion work
/// and three quarters (or more) of the output memory.
fn decode_jpeg_scaled(
    bytes: &[u8],
    header: &Header,
    scale: u32,
    limits: &Limits,
) -> Option<Raster> {
    use jpeg_decoder::PixelFormat;

    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(
        usize::try_from(limits.max_alloc_bytes).unwrap_or(usize::MAX),
    );
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    if !matches!(info.pixel_format, PixelFormat::RGB24 | PixelFormat::L8)
        || (u32::from(info.width), u32::from(info.height)) != (header.width, header.height)
    {
        return None;
    }
    let want_w = u16::try_from(header.width.div_ceil(scale)).ok()?;
    let want_h = u16::try_from(header.height.div_ceil(scale)).ok()?;
    // The decoder picks its own factor from the request; only accept the
    // result if it is exactly the factor the crop mapping assumes.
    if decoder.scale(want_w, want_h).ok()? != (want_w, want_h) {
        return None;
    }
    let pixels = decoder.decode().ok()?;
    let (w, h) = (u32::from(want_w), u32::from(want_h));
    match info.pixel_format {
        PixelFormat::L8 => Raster::from_luma(w, h, &pixels).ok(),
        _ => Raster::new(w, h, Channels::Rgb, pixels).ok(),
    }
}

fn decode_jpeg_full(bytes: &[u8], limits: &Limits) -> Result<Raster, ImagingError> {
    let max_side = usize::try_from(limits.max_side).unwrap_or(usize::MAX);
    let options = DecoderOptions::default()
        .set_max_width(max_side)
        .set_max_height(max_side)
        // Strict: a truncated file is refused rather than served with grey bands.
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder
        .decode_headers()
        .map_err(|_| ImagingError::corrupt())?;
    let info = decoder.info().ok_or_else(ImagingError::corrupt)?;
    let needed = decoder
        .output_buffer_size()
        .ok_or_else(ImagingError::corrupt)?;
    if u64::try_from(needed).unwrap_or(u64::MAX) > limits.max_alloc_bytes {
        return Err(ImagingError::TooLarge(
            "decoding would need too much memory".to_owned(),
        ));
    }
    let pixels = decoder.decode().map_err(|_| ImagingError::corrupt())?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    match decoder.output_colorspace().map(|c| c.num_components()) {
        Some(3) => Raster::new(w, h, Channels::Rgb, pixels),
        Some(1) => Raster::from_luma(w, h, &pixels),
        _ => Err(ImagingError::corrupt()),
    }
}

/// Decodes the first frame of any supported format with `image`, bounded by
/// `limits`. Also used by `transcode` on our own renditions.
pub(crate) fn decode_with_image(
    bytes: &[u8],
    format: SourceFormat,
    limits: &Limits,
) -> Result<DynamicImage, ImagingError> {
    fn finish(
        mut decoder: impl ImageDecoder,
        limits: &Limits,
    ) -> Result<DynamicImage, ImagingError> {
        decoder
            .set_limits(limits.image_limits())
            .map_err(ImagingError::from_image)?;
        DynamicImage::from_decoder(decoder).map_err(ImagingError::from_image)
    }
    let cursor = Cursor::new(bytes);
    match format {
        SourceFormat::Jpeg => finish(
            image::codecs::jpeg::JpegDecoder::new(cursor).map_err(ImagingError::from_image)?,
            limits,
        ),
        SourceFormat::Png => finish(
            PngDecoder::with_limits(cursor, limits.image_limits())
                .map_err(ImagingError::from_image)?,
            limits,
        ),
        SourceFormat::Gif => finish(
            GifDecoder::new(cursor).map_err(ImagingError::from_image)?,
            limits,
        ),
        SourceFormat::Webp => finish(
            WebPDecoder::new(cursor).map_err(ImagingError::from_image)?,
            limits,
        ),
    }
}
