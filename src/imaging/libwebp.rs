//! Lossy WebP through libwebp's encoder (built from the sources `libwebp-sys`
//! vendors, libwebp 1.6; no system library).
//!
//! Why libwebp: `image` only writes lossless WebP, which made our WebP
//! renditions five times the bytes of our JPEGs; libwebp is the reference
//! encoder and the one every lossy WebP on the web comes from. libwebp
//! reports every failure through return codes (it never unwinds or aborts),
//! so each call below is checked. All of libwebp's `unsafe` lives in this
//! file; libjpeg-turbo's is in `turbo.rs`.

use std::ffi::{c_int, c_void};

use libwebp_sys as webp;

use crate::imaging::ImagingError;
use crate::imaging::raster::{Channels, Raster};

/// How hard libwebp searches for a better encoding, 0 (fastest) to 6. 4 is
/// libwebp's and cwebp's default; see BENCHMARKS.md ("Bytes per picture") for
/// what 2 and 6 cost and gave.
const METHOD: c_int = 4;

fn failed(what: &str) -> ImagingError {
    ImagingError::Encode(format!("the WebP encoder {what}"))
}

/// A `WebPPicture` that frees whatever libwebp allocated for it, however the
/// encode ends.
struct Picture(webp::WebPPicture);

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: the picture was initialised by WebPPictureInit; freeing a
        // picture that owns no buffers yet is a no-op, and it is freed once.
        unsafe { webp::WebPPictureFree(&mut self.0) }
    }
}

/// libwebp's in-memory output sink; boxed so the address the picture holds
/// stays put while the encoder writes through it.
struct MemoryWriter(Box<webp::WebPMemoryWriter>);

impl MemoryWriter {
    fn new() -> Self {
        let mut writer = Box::new(webp::WebPMemoryWriter {
            mem: std::ptr::null_mut(),
            size: 0,
            max_size: 0,
            pad: [0],
        });
        // SAFETY: `writer` is a valid, exclusively borrowed WebPMemoryWriter.
        unsafe { webp::WebPMemoryWriterInit(&mut *writer) };
        MemoryWriter(writer)
    }

    fn bytes(&self) -> Vec<u8> {
        if self.0.mem.is_null() {
            return Vec::new();
        }
        // SAFETY: after a successful WebPEncode, `mem` points to `size`
        // initialised bytes owned by the writer.
        unsafe { std::slice::from_raw_parts(self.0.mem, self.0.size) }.to_vec()
    }
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        // SAFETY: the writer was initialised by WebPMemoryWriterInit and its
        // buffer (if any) was allocated by libwebp; cleared once.
        unsafe { webp::WebPMemoryWriterClear(&mut *self.0) }
    }
}

/// Lossy WebP (VP8) of `raster` at `quality` (0-100). RGBA rasters keep
/// their alpha in an ALPH chunk, losslessly compressed. Writes no metadata.
pub(crate) fn encode_lossy(raster: &Raster, quality: u8) -> Result<Vec<u8>, ImagingError> {
    let width = c_int::try_from(raster.width).map_err(|_| failed("got too large an image"))?;
    let height = c_int::try_from(raster.height).map_err(|_| failed("got too large an image"))?;
    let bpp = raster.channels.count();
    if raster.data.len() != raster.width as usize * raster.height as usize * bpp {
        return Err(failed("got a pixel buffer of the wrong size"));
    }
    let stride = width
        .checked_mul(bpp as c_int)
        .ok_or_else(|| failed("got too large an image"))?;

    let mut config = webp::WebPConfig::new_with_preset(
        webp::WebPPreset::WEBP_PRESET_DEFAULT,
        f32::from(quality.min(100)),
    )
    .map_err(|()| failed("could not be configured"))?;
    config.method = METHOD;
    // One thread per upload: the processing pool already runs one job per core.
    config.thread_level = 0;
    // SAFETY: `config` is an initialised WebPConfig.
    if unsafe { webp::WebPValidateConfig(&config) } == 0 {
        return Err(failed("rejected its configuration"));
    }

    let mut picture =
        Picture(webp::WebPPicture::new().map_err(|()| failed("could not be initialised"))?);
    picture.0.width = width;
    picture.0.height = height;
    // YUV input: lossy VP8 encodes YUV 4:2:0, so importing straight into it
    // skips an ARGB copy.
    picture.0.use_argb = 0;
    // SAFETY: `raster.data` holds height rows of `stride` bytes (checked
    // above) in the layout the import function names; libwebp copies them
    // into buffers the picture owns (freed by `Picture`'s drop).
    let imported = unsafe {
        match raster.channels {
            Channels::Rgb => {
                webp::WebPPictureImportRGB(&mut picture.0, raster.data.as_ptr(), stride)
            }
            Channels::Rgba => {
                webp::WebPPictureImportRGBA(&mut picture.0, raster.data.as_ptr(), stride)
            }
        }
    };
    if imported == 0 {
        return Err(failed("could not take the pixels"));
    }

    let mut writer = MemoryWriter::new();
    picture.0.writer = Some(webp::WebPMemoryWrite);
    picture.0.custom_ptr = (&mut *writer.0 as *mut webp::WebPMemoryWriter).cast::<c_void>();
    // SAFETY: config and picture are initialised and valid; the picture's
    // writer is libwebp's own WebPMemoryWrite, whose `custom_ptr` is the boxed
    // writer above, alive until after this call.
    let encoded = unsafe { webp::WebPEncode(&config, &mut picture.0) };
    if encoded == 0 {
        return Err(ImagingError::Encode(format!(
            "the WebP encoder failed ({:?})",
            picture.0.error_code
        )));
    }
    Ok(writer.bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32, channels: Channels) -> Raster {
        let data = (0..width * height)
            .flat_map(|i| {
                let (x, y) = (i % width, i / width);
                let alpha = if x < width / 4 { 0 } else { 255 };
                [(x * 255 / width) as u8, (y * 255 / height) as u8, 90, alpha]
                    .into_iter()
                    .take(channels.count())
            })
            .collect();
        Raster::new(width, height, channels, data).expect("raster")
    }

    fn chunk_ids(webp: &[u8]) -> Vec<[u8; 4]> {
        let mut ids = Vec::new();
        let mut pos = 12;
        while let Some(header) = webp.get(pos..pos + 8) {
            ids.push([header[0], header[1], header[2], header[3]]);
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            pos += 8 + len + len % 2;
        }
        ids
    }

    #[test]
    fn opaque_image_is_a_single_vp8_chunk() {
        let out = encode_lossy(&gradient(100, 60, Channels::Rgb), 80).expect("encode");
        assert_eq!(&out[..4], b"RIFF");
        assert_eq!(&out[8..12], b"WEBP");
        assert_eq!(chunk_ids(&out), vec![*b"VP8 "]);
        let decoded = image::load_from_memory(&out).expect("decodes").into_rgb8();
        assert_eq!(decoded.dimensions(), (100, 60));
    }

    #[test]
    fn transparent_image_keeps_alpha_next_to_vp8() {
        let out = encode_lossy(&gradient(100, 60, Channels::Rgba), 80).expect("encode");
        assert_eq!(chunk_ids(&out), vec![*b"VP8X", *b"ALPH", *b"VP8 "]);
        let decoded = image::load_from_memory(&out).expect("decodes").into_rgba8();
        assert_eq!(decoded.get_pixel(0, 30)[3], 0);
        assert_eq!(decoded.get_pixel(99, 30)[3], 255);
    }

    #[test]
    fn mismatched_buffer_is_an_error() {
        let mut raster = gradient(10, 10, Channels::Rgb);
        raster.data.pop();
        assert!(matches!(
            encode_lossy(&raster, 80),
            Err(ImagingError::Encode(_))
        ));
    }
}
