//! Reads stored dimensions and orientation from container headers without
//! decoding pixels, so oversized uploads are refused before any allocation.

use std::io::Cursor;

use image::ImageDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::metadata::Orientation;

use crate::imaging::{ImagingError, Limits, SourceFormat};

/// Dimensions as stored in the file (before EXIF orientation).
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
    /// The embedded ICC profile of a JPEG (APP2 segments), reassembled. PNG
    /// and WebP profiles come from their decoders instead.
    pub jpeg_icc: Option<Vec<u8>>,
}

pub(crate) fn read(
    bytes: &[u8],
    format: SourceFormat,
    limits: &Limits,
) -> Result<Header, ImagingError> {
    let (width, height, exif, jpeg_icc) = match format {
        SourceFormat::Jpeg => {
            let jpeg = jpeg_header(bytes)?;
            let icc = jpeg.icc_profile();
            (jpeg.width, jpeg.height, jpeg.exif, icc)
        }
        SourceFormat::Png => {
            let (w, h) = png_dimensions(bytes)?;
            (w, h, None, None)
        }
        SourceFormat::Gif => {
            let (w, h) = gif_dimensions(bytes, limits)?;
            (w, h, None, None)
        }
        SourceFormat::Webp => {
            let (w, h) = webp_dimensions(bytes)?;
            (w, h, None, None)
        }
    };
    check_dimensions(width, height, limits)?;

    // Only now, with dimensions known to be sane, is a real decoder allowed
    // near the bytes to find PNG eXIf / WebP EXIF chunks.
    let orientation = match format {
        SourceFormat::Jpeg => exif
            .and_then(Orientation::from_exif_chunk)
            .unwrap_or(Orientation::NoTransforms),
        SourceFormat::Gif => Orientation::NoTransforms,
        SourceFormat::Png => {
            let mut decoder = PngDecoder::with_limits(Cursor::new(bytes), limits.image_limits())
                .map_err(ImagingError::from_image)?;
            decoder.orientation().unwrap_or(Orientation::NoTransforms)
        }
        SourceFormat::Webp => {
            let mut decoder =
                WebPDecoder::new(Cursor::new(bytes)).map_err(ImagingError::from_image)?;
            decoder.orientation().unwrap_or(Orientation::NoTransforms)
        }
    };
    Ok(Header {
        width,
        height,
        orientation,
        jpeg_icc,
    })
}

pub(crate) fn check_dimensions(
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<(), ImagingError> {
    if width == 0 || height == 0 {
        return Err(ImagingError::InvalidFormat(
            "the image has no pixels".to_owned(),
        ));
    }
    if width > limits.max_side || height > limits.max_side {
        return Err(ImagingError::TooLarge(format!(
            "{width}x{height} exceeds the maximum side of {} pixels",
            limits.max_side
        )));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImagingError::TooLarge(format!(
            "{width}x{height} exceeds the maximum of {} pixels",
            limits.max_pixels
        )));
    }
    Ok(())
}

fn truncated() -> ImagingError {
    ImagingError::InvalidFormat("the image header is truncated or malformed".to_owned())
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

fn le16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

fn le24(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *bytes.get(at)?,
        *bytes.get(at + 1)?,
        *bytes.get(at + 2)?,
        0,
    ]))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) struct JpegHeader<'a> {
    pub width: u32,
    pub height: u32,
    /// TIFF structure of the first APP1 "Exif" segment, if any.
    pub exif: Option<&'a [u8]>,
    /// APP2 "ICC_PROFILE" segments after their signature: sequence number
    /// (from 1), count, then that part of the profile.
    pub icc_chunks: Vec<&'a [u8]>,
}

const ICC_SIGNATURE: &[u8] = b"ICC_PROFILE\0";

impl JpegHeader<'_> {
    /// The ICC profile split over the APP2 segments, joined in sequence
    /// order. None when there is none, or when the parts do not add up (a
    /// part missing, repeated or numbered past the count): such a profile is
    /// ignored, as browsers do.
    pub fn icc_profile(&self) -> Option<Vec<u8>> {
        let count = *self.icc_chunks.first()?.get(1)?;
        let mut parts: Vec<Option<&[u8]>> = vec![None; usize::from(count)];
        for chunk in &self.icc_chunks {
            let (&[seq, chunk_count], data) = chunk.split_first_chunk::<2>()?;
            let slot = parts.get_mut(usize::from(seq).checked_sub(1)?)?;
            if chunk_count != count || slot.is_some() {
                return None;
            }
            *slot = Some(data);
        }
        let parts: Option<Vec<&[u8]>> = parts.into_iter().collect();
        parts.map(|parts| parts.concat()).filter(|p| !p.is_empty())
    }
}

/// Walks JPEG marker segments up to the first scan. Cheaper than any decoder's
/// header parse and gives the EXIF block for orientation in the same pass.
pub(crate) fn jpeg_header(bytes: &[u8]) -> Result<JpegHeader<'_>, ImagingError> {
    if bytes.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err(truncated());
    }
    let mut pos = 2usize;
    let mut size: Option<(u32, u32)> = None;
    let mut exif = None;
    let mut icc_chunks = Vec::new();
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        if *bytes.get(pos).ok_or_else(truncated)? != 0xFF {
            return Err(truncated());
        }
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *bytes.get(pos).ok_or_else(truncated)?;
        pos += 1;
        match marker {
            // Standalone markers carry no length field.
            0x01 | 0xD0..=0xD7 => continue,
            0xD9 => return Err(truncated()),
            0xDA => break,
            _ => {}
        }
        let len = usize::from(be16(bytes, pos).ok_or_else(truncated)?);
        if len < 2 {
            return Err(truncated());
        }
        let segment = bytes.get(pos + 2..pos + len).ok_or_else(truncated)?;
        match marker {
            0xE1 if exif.is_none() && segment.starts_with(b"Exif\0\0") => {
                exif = Some(&segment[6..]);
            }
            0xE2 if segment.starts_with(ICC_SIGNATURE) => {
                icc_chunks.push(&segment[ICC_SIGNATURE.len()..]);
            }
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) && size.is_none() => {
                let height = be16(segment, 1).ok_or_else(truncated)?;
                let width = be16(segment, 3).ok_or_else(truncated)?;
                size = Some((u32::from(width), u32::from(height)));
            }
            _ => {}
        }
        pos += len;
    }
    let (width, height) = size.ok_or_else(truncated)?;
    Ok(JpegHeader {
        width,
        height,
        exif,
        icc_chunks,
    })
}

fn png_dimensions(bytes: &[u8]) -> Result<(u32, u32), ImagingError> {
    // IHDR is required to be the first chunk, right after the signature.
    if bytes.get(12..16) != Some(b"IHDR") {
        return Err(truncated());
    }
    let width = be32(bytes, 16).ok_or_else(truncated)?;
    let height = be32(bytes, 20).ok_or_else(truncated)?;
    Ok((width, height))
}

/// Returns the logical screen size, after checking that the first frame
/// (the only one we decode) is within limits too: a tiny logical screen can
/// front a frame descriptor declaring 65535x65535.
fn gif_dimensions(bytes: &[u8], limits: &Limits) -> Result<(u32, u32), ImagingError> {
    let width = u32::from(le16(bytes, 6).ok_or_else(truncated)?);
    let height = u32::from(le16(bytes, 8).ok_or_else(truncated)?);
    let flags = *bytes.get(10).ok_or_else(truncated)?;
    let mut pos = 13usize;
    if flags & 0x80 != 0 {
        pos += 3 * (2usize << (flags & 0x07));
    }
    loop {
        match *bytes.get(pos).ok_or_else(truncated)? {
            0x21 => {
                // Extension: label byte, then data sub-blocks until a zero length.
                pos += 2;
                loop {
                    let block = usize::from(*bytes.get(pos).ok_or_else(truncated)?);
                    pos += 1 + block;
                    if block == 0 {
                        break;
                    }
                }
            }
            0x2C => {
                let frame_w = u32::from(le16(bytes, pos + 5).ok_or_else(truncated)?);
                let frame_h = u32::from(le16(bytes, pos + 7).ok_or_else(truncated)?);
                check_dimensions(frame_w.max(1), frame_h.max(1), limits)?;
                return Ok((width, height));
            }
            _ => return Err(truncated()),
        }
    }
}

fn webp_dimensions(bytes: &[u8]) -> Result<(u32, u32), ImagingError> {
    let chunk = bytes.get(12..16).ok_or_else(truncated)?;
    match chunk {
        b"VP8 " => {
            // Key-frame start code precedes the 14-bit dimensions.
            if bytes.get(23..26) != Some(&[0x9D, 0x01, 0x2A]) {
                return Err(truncated());
            }
            let w = le16(bytes, 26).ok_or_else(truncated)? & 0x3FFF;
            let h = le16(bytes, 28).ok_or_else(truncated)? & 0x3FFF;
            Ok((u32::from(w), u32::from(h)))
        }
        b"VP8L" => {
            if bytes.get(20) != Some(&0x2F) {
                return Err(truncated());
            }
            let packed = u32::from_le_bytes(
                bytes
                    .get(21..25)
                    .ok_or_else(truncated)?
                    .try_into()
                    .map_err(|_| truncated())?,
            );
            Ok(((packed & 0x3FFF) + 1, ((packed >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => {
            let w = le24(bytes, 24).ok_or_else(truncated)? + 1;
            let h = le24(bytes, 27).ok_or_else(truncated)? + 1;
            Ok((w, h))
        }
        _ => Err(truncated()),
    }
}
