//! SIMD downscaling via fast_image_resize.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::imaging::ImagingError;
use crate::imaging::raster::{Channels, Raster};

/// Square region of a raster in (possibly fractional) pixel units; fractional
/// because a crop chosen in full-resolution coordinates lands between pixels
/// of a DCT-downscaled decode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceSquare {
    pub left: f64,
    pub top: f64,
    pub size: f64,
}

impl SourceSquare {
    pub fn whole(raster: &Raster) -> Self {
        SourceSquare {
            left: 0.0,
            top: 0.0,
            size: f64::from(raster.width.min(raster.height)),
        }
    }
}

/// Keeps the resizer's scratch buffers alive across the renditions of one
/// upload.
pub(crate) struct Shrinker {
    resizer: Resizer,
}

impl Shrinker {
    pub fn new() -> Self {
        Shrinker {
            resizer: Resizer::new(),
        }
    }

    /// Resamples `square` of `src` to `edge`x`edge`: a plain copy when the square
    /// is already `edge` pixels wide on whole-pixel bounds, otherwise a separable
    /// convolution with the Catmull-Rom filter (support 2 against Lanczos3's 3, so
    /// two-thirds of the taps per pass). The reduction is whatever the caller
    /// asks: under 2x from a JPEG libjpeg-turbo decoded at n/8 scale (unless even
    /// 1/8 is larger), any ratio from other decodes, ~2x per step between renditions.
    pub fn shrink(
        &mut self,
        src: &Raster,
        square: SourceSquare,
        edge: u32,
    ) -> Result<Raster, ImagingError> {
        if square.size == f64::from(edge) && square.left.fract() == 0.0 && square.top.fract() == 0.0
        {
            return Ok(copy_square(
                src,
                square.left as u32,
                square.top as u32,
                edge,
            ));
        }
        let pixel_type = match src.channels {
            Channels::Rgb => PixelType::U8x3,
            Channels::Rgba => PixelType::U8x4,
        };
        let failed = |_| ImagingError::corrupt();
        let src_view =
            ImageRef::new(src.width, src.height, &src.data, pixel_type).map_err(failed)?;
        let mut dst = Image::new(edge, edge, pixel_type);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom))
            .crop(square.left, square.top, square.size, square.size);
        self.resizer
            .resize(&src_view, &mut dst, &options)
            .map_err(|_| ImagingError::corrupt())?;
        Raster::new(edge, edge, src.channels, dst.into_vec())
    }
}

/// The caller guarantees the square lies inside `src`.
fn copy_square(src: &Raster, left: u32, top: u32, edge: u32) -> Raster {
    let bpp = src.channels.count();
    let row_len = edge as usize * bpp;
    let stride = src.width as usize * bpp;
    let mut data = Vec::with_capacity(row_len * edge as usize);
    for row in src
        .data
        .chunks_exact(stride)
        .skip(top as usize)
        .take(edge as usize)
    {
        let start = left as usize * bpp;
        data.extend_from_slice(&row[start..start + row_len]);
    }
    Raster {
        width: edge,
        height: edge,
        channels: src.channels,
        data,
    }
}
