//! libjpeg-turbo through its TurboJPEG 3 API (built from the sources that
//! `turbojpeg-sys` vendors, with its SIMD code), for the two steps that
//! dominate a camera upload: decoding the JPEG and encoding the largest
//! renditions.
//!
//! Why libjpeg-turbo rather than a pure-Rust codec: on a 12 MP photo the
//! pure-Rust decoders spent ~100 ms in entropy decoding and a scalar reduced
//! IDCT, libjpeg-turbo ~45 ms; its SIMD encoder writes a 1024 px rendition in
//! ~4 ms against ~15 ms. TurboJPEG catches libjpeg's `longjmp` errors inside
//! each call, so every failure comes back as a return code, never as an
//! unwind across Rust frames. All of libjpeg-turbo's `unsafe` lives here;
//! libwebp's is in `libwebp.rs`.

use std::ffi::{CStr, c_int, c_void};
use std::ptr::NonNull;

use turbojpeg_sys as tj;

use crate::imaging::crop::CropRect;
use crate::imaging::raster::{Channels, Raster};
use crate::imaging::resize::SourceSquare;
use crate::imaging::{ImagingError, Limits};

/// Progressive JPEGs may repeat scans to make decoding arbitrarily slow (see
/// libjpeg-turbo's "Two Issues with the JPEG Standard"); real encoders use
/// about a dozen.
const MAX_SCANS: c_int = 100;

/// One TurboJPEG instance; not shared between threads.
struct Handle(NonNull<c_void>);

impl Handle {
    fn new(kind: tj::TJINIT) -> Result<Self, String> {
        // SAFETY: tj3Init has no preconditions; it returns null on failure.
        let raw = unsafe { tj::tj3Init(kind as c_int) };
        NonNull::new(raw)
            .map(Handle)
            .ok_or_else(|| "could not initialise libjpeg-turbo".to_owned())
    }

    fn ptr(&self) -> tj::tjhandle {
        self.0.as_ptr()
    }

    fn set(&mut self, param: tj::TJPARAM, value: c_int) -> Result<(), String> {
        // SAFETY: the handle is live; unknown parameters are reported as -1.
        self.check(unsafe { tj::tj3Set(self.ptr(), param as c_int, value) })
    }

    fn get(&self, param: tj::TJPARAM) -> c_int {
        // SAFETY: the handle is live; unknown parameters return -1.
        unsafe { tj::tj3Get(self.ptr(), param as c_int) }
    }

    /// Turns a TurboJPEG return code into the handle's error message.
    fn check(&self, code: c_int) -> Result<(), String> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the
        // handle, valid until its next call; it is copied out at once.
        let message = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.ptr())) };
        Err(message.to_string_lossy().into_owned())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed exactly once.
        unsafe { tj::tj3Destroy(self.ptr()) }
    }
}

/// Decodes the part of a JPEG that `stored_crop` (in stored-pixel
/// coordinates) covers, reduced in the DCT domain by the largest factor
/// `n/8` that still leaves the crop at least `needed_edge` pixels wide, so the
/// resize after it only ever shrinks.
///
/// `Err` carries libjpeg-turbo's reason. It is strict: warnings such as
/// "premature end of data" are errors, so a truncated file is refused rather
/// than decoded with grey bands. Colour models it cannot turn into RGB (CMYK,
/// YCCK) are errors too; the caller falls back to another decoder for those.
pub(crate) fn decode(
    bytes: &[u8],
    width: u32,
    height: u32,
    stored_crop: &CropRect,
    needed_edge: u32,
    limits: &Limits,
) -> Result<(Raster, SourceSquare), String> {
    let mut handle = Handle::new(tj::TJINIT_TJINIT_DECOMPRESS)?;
    handle.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
    handle.set(tj::TJPARAM_TJPARAM_SCANLIMIT, MAX_SCANS)?;
    handle.set(
        tj::TJPARAM_TJPARAM_MAXPIXELS,
        c_int::try_from(limits.max_pixels).unwrap_or(c_int::MAX),
    )?;
    handle.set(
        tj::TJPARAM_TJPARAM_MAXMEMORY,
        c_int::try_from(limits.max_alloc_bytes / (1024 * 1024)).unwrap_or(c_int::MAX),
    )?;
    let len = to_size(bytes.len())?;
    // SAFETY: `bytes` is a live slice and its exact length is passed.
    handle.check(unsafe { tj::tj3DecompressHeader(handle.ptr(), bytes.as_ptr(), len) })?;

    // Our own header parser already vetted the dimensions; a file whose
    // frames disagree with it is not one we understand.
    let header_dims = (
        handle.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
        handle.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
    );
    if header_dims != (to_int(width)?, to_int(height)?) {
        return Err("frame dimensions disagree with the header".to_owned());
    }

    let eighths = dct_eighths(stored_crop.size(), needed_edge);
    // TurboJPEG matches factors against its table in lowest terms only: it
    // knows 1/2 but refuses 4/8.
    let common = gcd(eighths, 8);
    let factor = tj::tjscalingfactor {
        num: eighths / common,
        denom: 8 / common,
    };
    // SAFETY: the handle is live and its header has been read.
    handle.check(unsafe { tj::tj3SetScalingFactor(handle.ptr(), factor) })?;
    let scale = f64::from(eighths) / 8.0;
    // TurboJPEG's own rounding of scaled sizes (TJSCALED): up.
    let scaled = |v: u32| (f64::from(v) * scale).ceil() as i64;
    let full = (scaled(width), scaled(height));
    // The crop in decoded pixels of the whole (scaled) image.
    let crop = SourceSquare {
        left: f64::from(stored_crop.x()) * scale,
        top: f64::from(stored_crop.y()) * scale,
        size: f64::from(stored_crop.size()) * scale,
    };

    // Decode only the columns and rows around the crop. Its left edge must
    // sit on a (scaled) MCU boundary; for subsamplings TurboJPEG cannot name,
    // the whole image is decoded.
    let subsamp = handle.get(tj::TJPARAM_TJPARAM_SUBSAMP);
    let region = match usize::try_from(subsamp).ok().and_then(mcu_width) {
        Some(mcu) => {
            let step = scaled(mcu);
            let left = crop.left.floor() as i64;
            let (x, y) = (left - left % step, crop.top.floor() as i64);
            let right = ((crop.left + crop.size).ceil() as i64).min(full.0);
            let bottom = ((crop.top + crop.size).ceil() as i64).min(full.1);
            let region = tj::tjregion {
                x: to_int(x)?,
                y: to_int(y)?,
                w: to_int(right - x)?,
                h: to_int(bottom - y)?,
            };
            // SAFETY: the handle is live, its header read, its scaling set.
            handle.check(unsafe { tj::tj3SetCroppingRegion(handle.ptr(), region) })?;
            region
        }
        None => tj::tjregion {
            x: 0,
            y: 0,
            w: to_int(full.0)?,
            h: to_int(full.1)?,
        },
    };

    let bad_region = |_| "bad cropping region".to_owned();
    let out_w = u32::try_from(region.w).map_err(bad_region)?;
    let out_h = u32::try_from(region.h).map_err(bad_region)?;
    let pitch = out_w as usize * 3;
    let mut pixels = vec![0u8; pitch * out_h as usize];
    // SAFETY: `pixels` holds `pitch * region height` bytes, exactly what
    // tj3Decompress8 writes for a cropped RGB decode with this pitch.
    handle.check(unsafe {
        tj::tj3Decompress8(
            handle.ptr(),
            bytes.as_ptr(),
            len,
            pixels.as_mut_ptr(),
            to_int(pitch)?,
            tj::TJPF_TJPF_RGB,
        )
    })?;

    let square = SourceSquare {
        left: crop.left - f64::from(region.x),
        top: crop.top - f64::from(region.y),
        size: crop.size.min(f64::from(out_w)).min(f64::from(out_h)),
    };
    let raster = Raster::new(out_w, out_h, Channels::Rgb, pixels).map_err(|e| e.to_string())?;
    Ok((raster, square))
}

/// Smallest `n` in 1..=8 for which the crop scaled by `n/8` is still at
/// least `needed_edge` wide, except that 7/8 becomes 8/8: libjpeg-turbo's
/// 7x7 inverse DCT is plain C while 8x8 has SIMD, and the full-size decode
/// measured faster (1800x1200 photos, crop 1200 for 1024: p50 34.5 / 37.1 ms
/// at 7/8, 32.1 / 32.3 ms at 8/8).
pub(crate) fn dct_eighths(crop_size: u32, needed_edge: u32) -> c_int {
    let crop = u64::from(crop_size.max(1));
    let needed = u64::from(needed_edge) * 8;
    match needed.div_ceil(crop).clamp(1, 8) {
        7 => 8,
        eighths => eighths as c_int,
    }
}

fn gcd(a: c_int, b: c_int) -> c_int {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Width in pixels of one MCU for a TurboJPEG subsampling code (TJSAMP_444,
/// 422, 420, GRAY, 440, 411, 441). The header declares this table `static`,
/// so the library does not export it.
fn mcu_width(subsamp: usize) -> Option<u32> {
    [8, 16, 16, 8, 8, 32, 8].get(subsamp).copied()
}

fn to_size(len: usize) -> Result<tj::size_t, String> {
    tj::size_t::try_from(len).map_err(|_| "image too large for libjpeg-turbo".to_owned())
}

fn to_int<T: TryInto<c_int>>(value: T) -> Result<c_int, String> {
    value
        .try_into()
        .map_err(|_| "image too large for libjpeg-turbo".to_owned())
}

/// How the entropy-coded part of a JPEG is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// One sequential scan with the standard Huffman tables: the fastest.
    Standard,
    /// One sequential scan with Huffman tables optimised for the image: a
    /// second pass over the coefficients, smaller at the same quality.
    Optimised,
    /// Several scans (coarse to fine), optimised tables.
    Progressive,
}

/// The coding that pays for a rendition `edge` px wide. Measured on the 1024
/// px to 64 px renditions of the corpus photos at q82 (BENCHMARKS.md, "Bytes
/// per picture"): optimised tables save 16% at 64 px, 7% at 128 px, 3% at 256
/// px and 1-2% above, for 2.6x the encode time; progressive saves another
/// 2-3% from 256 px up (and costs bytes below) for another 2.3x. The 1024 px
/// rendition takes 2.4 ms standard, 6.3 ms optimised and 14.9 ms progressive:
/// up to a quarter of the whole upload pipeline for 1-4% of a rendition that
/// is rarely served, so it stays standard; 256 and 512 px (avatars on high-DPI
/// screens) are progressive for +0.9 and +3.4 ms.
pub(crate) fn coding_for(edge: u32) -> Coding {
    match edge {
        0..256 => Coding::Optimised,
        256..=512 => Coding::Progressive,
        _ => Coding::Standard,
    }
}

/// JPEG, 4:2:0, at `quality`, of an RGB raster, coded as `coding_for` its
/// size says. Writes no metadata of any kind (no EXIF, no ICC, no comments).
pub(crate) fn encode_rgb(raster: &Raster, quality: u8) -> Result<Vec<u8>, ImagingError> {
    let coding = coding_for(raster.width.min(raster.height));
    encode(raster, quality, coding)
}

pub(crate) fn encode(
    raster: &Raster,
    quality: u8,
    coding: Coding,
) -> Result<Vec<u8>, ImagingError> {
    let failed = |_| ImagingError::Encode("the JPEG encoder rejected the image".to_owned());
    if raster.channels != Channels::Rgb {
        return Err(failed(String::new()));
    }
    let mut handle = Handle::new(tj::TJINIT_TJINIT_COMPRESS).map_err(failed)?;
    handle
        .set(
            tj::TJPARAM_TJPARAM_QUALITY,
            c_int::from(quality.clamp(1, 100)),
        )
        .map_err(failed)?;
    handle
        .set(tj::TJPARAM_TJPARAM_SUBSAMP, tj::TJSAMP_TJSAMP_420 as c_int)
        .map_err(failed)?;
    handle
        .set(
            tj::TJPARAM_TJPARAM_OPTIMIZE,
            c_int::from(coding != Coding::Standard),
        )
        .map_err(failed)?;
    handle
        .set(
            tj::TJPARAM_TJPARAM_PROGRESSIVE,
            c_int::from(coding == Coding::Progressive),
        )
        .map_err(failed)?;
    let width = to_int(raster.width).map_err(failed)?;
    let height = to_int(raster.height).map_err(failed)?;
    let expected = raster.width as usize * raster.height as usize * 3;
    if raster.data.len() != expected {
        return Err(failed(String::new()));
    }
    let mut jpeg: *mut u8 = std::ptr::null_mut();
    let mut size: tj::size_t = 0;
    // SAFETY: the source buffer holds width * height * 3 bytes (checked
    // above) with a pitch of width * 3; TurboJPEG allocates `jpeg` itself
    // since it starts null, and we free it below with tj3Free.
    let code = unsafe {
        tj::tj3Compress8(
            handle.ptr(),
            raster.data.as_ptr(),
            width,
            width * 3,
            height,
            tj::TJPF_TJPF_RGB,
            &mut jpeg,
            &mut size,
        )
    };
    let result = handle.check(code).map(|()| {
        let len = usize::try_from(size).unwrap_or(0);
        // SAFETY: on success `jpeg` points to `size` initialised bytes.
        unsafe { std::slice::from_raw_parts(jpeg, len) }.to_vec()
    });
    if !jpeg.is_null() {
        // SAFETY: allocated by TurboJPEG for this call, freed once.
        unsafe { tj::tj3Free(jpeg.cast()) };
    }
    result.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth gradient: red = x / 8, green = y / 8.
    fn gradient(width: u32, height: u32) -> Raster {
        let data = (0..width * height)
            .flat_map(|i| [((i % width) / 8) as u8, ((i / width) / 8) as u8, 128])
            .collect();
        Raster::new(width, height, Channels::Rgb, data).expect("raster")
    }

    fn pixel(raster: &Raster, x: f64, y: f64) -> [u8; 3] {
        let i = (y as usize * raster.width as usize + x as usize) * 3;
        [raster.data[i], raster.data[i + 1], raster.data[i + 2]]
    }

    #[test]
    fn scaled_cropped_decode_of_every_coding() {
        let source = gradient(1600, 1200);
        for coding in [Coding::Standard, Coding::Optimised, Coding::Progressive] {
            let jpeg = encode(&source, 90, coding).expect("encode");
            let crop = CropRect::within(404, 104, 1000, 1600, 1200).expect("crop");
            let (raster, square) =
                decode(&jpeg, 1600, 1200, &crop, 300, &Limits::default()).expect("decode");
            // 300 of 1000 px needs 3/8: the crop is 375 px in the decoded pixels.
            assert_eq!(square.size, 375.0, "{coding:?}");
            for (dx, dy) in [(0.0, 0.0), (200.0, 100.0), (374.0, 374.0)] {
                let got = pixel(&raster, square.left + dx, square.top + dy);
                // Back in source pixels: 404 + dx * 8/3, 104 + dy * 8/3.
                let want = [
                    (404.0 + dx * 8.0 / 3.0) / 8.0,
                    (104.0 + dy * 8.0 / 3.0) / 8.0,
                ];
                for channel in 0..2 {
                    let diff = (f64::from(got[channel]) - want[channel]).abs();
                    assert!(diff < 4.0, "{coding:?} at ({dx},{dy}): {got:?} vs {want:?}");
                }
            }
        }
    }

    /// The start-of-frame marker says how a JPEG was coded: SOF0 baseline,
    /// SOF2 progressive.
    fn start_of_frame(jpeg: &[u8]) -> Option<u8> {
        jpeg.windows(2)
            .find(|w| w[0] == 0xFF && matches!(w[1], 0xC0..=0xC2))
            .map(|w| w[1])
    }

    #[test]
    fn progressive_only_from_256_to_512_px() {
        for (edge, sof) in [
            (64, 0xC0),
            (255, 0xC0),
            (256, 0xC2),
            (512, 0xC2),
            (1024, 0xC0),
        ] {
            let jpeg = encode_rgb(&gradient(edge, edge), 82).expect("encode");
            assert_eq!(start_of_frame(&jpeg), Some(sof), "{edge} px");
        }
        let standard = encode(&gradient(128, 128), 82, Coding::Standard).expect("encode");
        let optimised = encode(&gradient(128, 128), 82, Coding::Optimised).expect("encode");
        assert!(optimised.len() < standard.len());
    }

    #[test]
    fn every_dct_scale_decodes() {
        let source = gradient(1600, 1200);
        let jpeg = encode(&source, 90, Coding::Standard).expect("encode");
        let crop = CropRect::within(200, 100, 1000, 1600, 1200).expect("crop");
        for eighths in 1..=8u32 {
            let needed = 1000 * eighths / 8;
            let used = if eighths == 7 { 8 } else { eighths };
            assert_eq!(dct_eighths(1000, needed), used as c_int);
            let (_, square) = decode(&jpeg, 1600, 1200, &crop, needed, &Limits::default())
                .unwrap_or_else(|e| panic!("{eighths}/8: {e}"));
            assert_eq!(square.size, f64::from(1000 * used / 8), "{eighths}/8");
        }
    }

    #[test]
    fn truncated_and_mislabelled_files_are_refused() {
        let jpeg = encode(&gradient(256, 256), 90, Coding::Progressive).expect("encode");
        let crop = CropRect::within(0, 0, 256, 256, 256).expect("crop");
        let limits = Limits::default();
        assert!(decode(&jpeg[..jpeg.len() * 2 / 3], 256, 256, &crop, 64, &limits).is_err());
        assert!(decode(&jpeg, 512, 256, &crop, 64, &limits).is_err());
        assert!(decode(b"\xFF\xD8\xFFnot a jpeg", 256, 256, &crop, 64, &limits).is_err());
    }
}
