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
use crate::imaging::resize::SourceSquare;
use crate::imaging::turbo;
use crate::imaging::{ImagingError, Limits, SourceFormat};

/// Decoded pixels, still in stored orientation, and where the requested
/// crop lies in them: decoders may return fewer pixels than the file holds
/// (reduced in the DCT domain, or only the region around the crop).
pub(crate) struct Decoded {
    pub raster: Raster,
    pub square: SourceSquare,
    /// The source's embedded ICC profile, if it has one.
    pub icc: Option<Vec<u8>>,
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
    let whole = |raster: Raster, icc: Option<Vec<u8>>| Decoded {
        square: SourceSquare {
            left: f64::from(stored_crop.x()),
            top: f64::from(stored_crop.y()),
            size: f64::from(stored_crop.size()),
        },
        raster,
        icc,
    };
    match format {
        SourceFormat::Jpeg => {
            match turbo::decode(
                bytes,
                header.width,
                header.height,
                stored_crop,
                needed_edge,
                limits,
            ) {
                Ok((raster, square)) => Ok(Decoded {
                    raster,
                    square,
                    icc: header.jpeg_icc.clone(),
                }),
                // libjpeg-turbo refuses CMYK/YCCK output to RGB, and any
                // warning; the strict pure-Rust decoder gets the last word.
                Err(reason) => {
                    tracing::debug!(%reason, "libjpeg-turbo declined; trying zune-jpeg");
                    let raster = decode_jpeg_full(bytes, limits)?;
                    Ok(whole(raster, header.jpeg_icc.clone()))
                }
            }
        }
        other => {
            let (image, icc) = decode_with_profile(bytes, other, limits)?;
            Ok(whole(Raster::from_dynamic(image)?, icc))
        }
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
/// `limits`. Used by `transcode` on our own renditions, which carry no
/// colour profile.
pub(crate) fn decode_with_image(
    bytes: &[u8],
    format: SourceFormat,
    limits: &Limits,
) -> Result<DynamicImage, ImagingError> {
    decode_with_profile(bytes, format, limits).map(|(image, _)| image)
}

/// Like `decode_with_image`, also returning the embedded ICC profile (PNG
/// iCCP, WebP ICCP, JPEG APP2); GIF has none.
fn decode_with_profile(
    bytes: &[u8],
    format: SourceFormat,
    limits: &Limits,
) -> Result<(DynamicImage, Option<Vec<u8>>), ImagingError> {
    fn finish(
        mut decoder: impl ImageDecoder,
        limits: &Limits,
    ) -> Result<(DynamicImage, Option<Vec<u8>>), ImagingError> {
        decoder
            .set_limits(limits.image_limits())
            .map_err(ImagingError::from_image)?;
        // A profile that cannot be read is no reason to refuse the pixels.
        let icc = decoder.icc_profile().ok().flatten();
        let image = DynamicImage::from_decoder(decoder).map_err(ImagingError::from_image)?;
        Ok((image, icc))
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
