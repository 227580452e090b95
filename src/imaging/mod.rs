//! Profile-image processing: validate an upload, decode it, convert it to
//! sRGB from its ICC profile, apply EXIF orientation, crop to a square and
//! produce freshly encoded renditions.
//!
//! Pipeline order is chosen for speed on big camera JPEGs: the crop is
//! mapped into stored (un-rotated) coordinates, JPEGs are decoded at the
//! smallest DCT scale that still covers the largest rendition, the largest
//! rendition is resampled straight from that, and only then is it rotated
//! upright; smaller renditions are resampled from the next larger one.

// `unsafe` is confined to the two files that wrap C libraries.
#![deny(unsafe_code)]

mod colour;
mod crop;
mod decode;
mod encode;
mod error;
mod header;
#[allow(unsafe_code)]
mod libwebp;
mod orient;
mod placeholder;
mod raster;
mod resize;
mod sniff;
mod ssim;
mod thumbhash;
#[allow(unsafe_code)]
mod turbo;
mod webp_search;

pub use crop::CropRect;
pub use encode::{QualityChoice, transcode, transcode_at, webp_quality};
pub use error::ImagingError;
pub use placeholder::placeholder;
pub use sniff::sniff;
pub use ssim::ssim;
pub use thumbhash::thumbhash_of_rendition;
pub use webp_search::WebpSearch;

use decode::{Decoded, guarded};
use raster::Channels;
use resize::{Shrinker, SourceSquare};

/// Upload formats we accept, as recognised from magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl SourceFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "image/jpeg",
            SourceFormat::Png => "image/png",
            SourceFormat::Webp => "image/webp",
            SourceFormat::Gif => "image/gif",
        }
    }
}

/// Formats we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

impl ImageFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
        }
    }
}

/// Upload limits. Dimensions are checked from headers before any pixel
/// buffer exists; `max_alloc_bytes` bounds decoders as a second line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_side: u32,
    pub max_pixels: u64,
    pub max_alloc_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 10 * 1024 * 1024,
            max_side: 8192,
            max_pixels: 50_000_000,
            max_alloc_bytes: 512 * 1024 * 1024,
        }
    }
}

impl Limits {
    pub(crate) fn image_limits(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_alloc_bytes);
        limits
    }
}

/// Which square renditions to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionSpec {
    pub sizes: Vec<u32>,
    /// Edge of the "full" rendition (the crop itself, capped at this).
    pub full_max_edge: u32,
    pub jpeg_quality: u8,
}

impl Default for RenditionSpec {
    fn default() -> Self {
        RenditionSpec {
            sizes: vec![64, 128, 256, 512, 1024],
            full_max_edge: 1024,
            // BENCHMARKS.md, "Bytes per picture": coded as
            // `turbo::coding_for` says (optimised tables, progressive at
            // 256-512 px), q82 is the lowest quality whose SSIM stays within
            // 0.002 of libvips' q80 output on every corpus row (64-512 px),
            // at 2% fewer bytes overall.
            jpeg_quality: 82,
        }
    }
}

impl RenditionSpec {
    /// Distinct rendition edges, ascending. Never larger than the crop (no
    /// upscaling) and never empty: the "full" rendition always exists.
    pub fn edges(&self, crop_size: u32) -> Vec<u32> {
        let mut edges: Vec<u32> = self
            .sizes
            .iter()
            .map(|&s| s.min(crop_size))
            .chain(std::iter::once(crop_size.min(self.full_max_edge.max(1))))
            .filter(|&e| e > 0)
            .collect();
        edges.sort_unstable();
        edges.dedup();
        edges
    }
}

#[derive(Debug, Clone)]
pub struct Processed {
    pub source_format: SourceFormat,
    /// Width of the upright (EXIF-oriented) original.
    pub width: u32,
    /// Height of the upright (EXIF-oriented) original.
    pub height: u32,
    /// Crop that was applied, in upright coordinates.
    pub crop: CropRect,
    /// True when the source has real transparency (an alpha channel with at
    /// least one non-opaque pixel); renditions are then PNG, otherwise JPEG.
    pub has_alpha: bool,
    /// Ascending by edge.
    pub renditions: Vec<Rendition>,
    /// ThumbHash of the cropped image (made from the smallest rendition's pixels).
    pub thumbhash: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Rendition {
    pub edge: u32,
    pub format: ImageFormat,
    pub bytes: Vec<u8>,
}

fn check_input_size(bytes: &[u8], limits: &Limits) -> Result<SourceFormat, ImagingError> {
    if bytes.is_empty() {
        return Err(ImagingError::InvalidFormat(
            "the upload is empty".to_owned(),
        ));
    }
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limits.max_bytes {
        return Err(ImagingError::TooLarge(format!(
            "the upload exceeds {} bytes",
            limits.max_bytes
        )));
    }
    sniff(bytes).ok_or_else(|| {
        ImagingError::InvalidFormat("only JPEG, PNG, WebP and GIF images are accepted".to_owned())
    })
}

/// Format and upright dimensions from headers alone; applies all limits.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<(SourceFormat, u32, u32), ImagingError> {
    let format = check_input_size(bytes, limits)?;
    guarded(|| {
        let header = header::read(bytes, format, limits)?;
        let (w, h) = orient::upright_dimensions(header.orientation, header.width, header.height);
        Ok((format, w, h))
    })
}

/// Validates and processes an upload into square renditions.
///
/// `crop` is `(x, y, size)` in upright coordinates; `None` picks the largest
/// centred square.
pub fn process(
    bytes: &[u8],
    crop: Option<(u32, u32, u32)>,
    limits: &Limits,
    spec: &RenditionSpec,
) -> Result<Processed, ImagingError> {
    let format = check_input_size(bytes, limits)?;
    guarded(|| run_pipeline(bytes, format, crop, limits, spec, None))
}

/// `process`, with every rendition in `output` instead of the default format,
/// its lossy quality chosen as `quality` says (`QualityChoice::Service` for
/// what the service serves); for `render` and for measurements such as
/// `benches/quality.rs` (WebP straight from the pixels).
pub fn process_as(
    bytes: &[u8],
    crop: Option<(u32, u32, u32)>,
    limits: &Limits,
    spec: &RenditionSpec,
    output: ImageFormat,
    quality: QualityChoice,
) -> Result<Processed, ImagingError> {
    let format = check_input_size(bytes, limits)?;
    guarded(|| run_pipeline(bytes, format, crop, limits, spec, Some((output, quality))))
}

/// One rendition, `edge` px (capped at the crop) in `format`, made from the
/// original upload with the crop (`x`, `y`, `size` in upright pixels) its
/// media item was made with. For the formats not made at upload time: WebP
/// made this way, at the quality searched for this picture, is 31% smaller
/// than our JPEG at about its SSIM, while WebP transcoded from the stored JPEG
/// rendition carries that JPEG's loss too and ends up ~0.02 SSIM below it
/// (BENCHMARKS.md, "Bytes per picture"). The search costs up to five WebP
/// encodes instead of one.
pub fn render(
    original: &[u8],
    crop: (u32, u32, u32),
    edge: u32,
    format: ImageFormat,
    limits: &Limits,
    jpeg_quality: u8,
) -> Result<Rendition, ImagingError> {
    let spec = RenditionSpec {
        sizes: vec![edge],
        full_max_edge: edge,
        jpeg_quality,
    };
    let processed = process_as(
        original,
        Some(crop),
        limits,
        &spec,
        format,
        QualityChoice::Service,
    )?;
    processed
        .renditions
        .into_iter()
        .next()
        .ok_or_else(ImagingError::corrupt)
}

fn run_pipeline(
    bytes: &[u8],
    format: SourceFormat,
    crop: Option<(u32, u32, u32)>,
    limits: &Limits,
    spec: &RenditionSpec,
    output: Option<(ImageFormat, QualityChoice)>,
) -> Result<Processed, ImagingError> {
    let header = header::read(bytes, format, limits)?;
    let (width, height) =
        orient::upright_dimensions(header.orientation, header.width, header.height);
    let crop = match crop {
        Some((x, y, size)) => CropRect::within(x, y, size, width, height)?,
        None => CropRect::largest_centred_square(width, height)?,
    };
    let edges = spec.edges(crop.size());
    let largest = edges.last().copied().unwrap_or(1);
    let stored_crop =
        orient::crop_to_stored(header.orientation, &crop, header.width, header.height)?;

    let Decoded {
        mut raster,
        square,
        icc,
    } = decode::decode(bytes, format, &header, &stored_crop, largest, limits)?;
    let has_alpha = raster.channels == Channels::Rgba;
    // Before any resampling, so filters mix the colours that will be shown.
    colour::convert_to_srgb(&mut raster, icc.as_deref());

    let mut shrinker = Shrinker::new();
    let top = shrinker.shrink(&raster, square, largest)?;
    drop(raster);
    let top = orient::apply(top, header.orientation)?;

    let default_format = if has_alpha {
        ImageFormat::Png
    } else {
        ImageFormat::Jpeg
    };
    let (output, choice) = output.unwrap_or((default_format, QualityChoice::Service));
    // Each smaller rendition is resampled from the next larger one: a
    // fraction of the work of going back to the source, at ratios of ~2x per
    // step with the default sizes (Catmull-Rom, see `Shrinker::shrink`).
    let mut renditions = Vec::with_capacity(edges.len());
    let mut previous = top;
    for &edge in edges.iter().rev() {
        if edge != previous.width {
            previous = shrinker.shrink(&previous, SourceSquare::whole(&previous), edge)?;
        }
        renditions.push(Rendition {
            edge,
            format: output,
            bytes: encode::encode(&previous, output, spec.jpeg_quality, choice)?,
        });
    }
    renditions.reverse();
    // `previous` is now the smallest rendition's pixels: the cheapest to hash.
    let thumbhash = thumbhash::of_raster(&previous, &mut shrinker)?;

    Ok(Processed {
        source_format: format,
        width,
        height,
        crop,
        has_alpha,
        renditions,
        thumbhash,
    })
}

#[cfg(test)]
mod tests;
