//! Tightly packed 8-bit RGB or RGBA pixels: the one in-memory layout every
//! stage of the pipeline agrees on.

use image::{DynamicImage, RgbImage, RgbaImage};

use crate::imaging::ImagingError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channels {
    Rgb,
    Rgba,
}

impl Channels {
    pub fn count(self) -> usize {
        match self {
            Channels::Rgb => 3,
            Channels::Rgba => 4,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Raster {
    pub width: u32,
    pub height: u32,
    pub channels: Channels,
    pub data: Vec<u8>,
}

impl Raster {
    pub fn new(
        width: u32,
        height: u32,
        channels: Channels,
        data: Vec<u8>,
    ) -> Result<Self, ImagingError> {
        let expected = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(channels.count()))
            .ok_or_else(ImagingError::corrupt)?;
        // Decoders may hand back a longer buffer (padding); shorter means the
        // data does not describe the image it claims to.
        if data.len() < expected {
            return Err(ImagingError::corrupt());
        }
        let mut data = data;
        data.truncate(expected);
        Ok(Raster {
            width,
            height,
            channels,
            data,
        })
    }

    pub fn from_luma(width: u32, height: u32, luma: &[u8]) -> Result<Self, ImagingError> {
        let data = luma.iter().flat_map(|&l| [l, l, l]).collect();
        Raster::new(width, height, Channels::Rgb, data)
    }

    /// Keeps alpha only when it carries information, so opaque images take the
    /// cheaper 3-channel path and end up as JPEG.
    pub fn from_dynamic(image: DynamicImage) -> Result<Self, ImagingError> {
        let (width, height) = (image.width(), image.height());
        if image.color().has_alpha() {
            let rgba = image.into_rgba8().into_raw();
            Raster::new(width, height, Channels::Rgba, rgba)?.drop_opaque_alpha()
        } else {
            Raster::new(width, height, Channels::Rgb, image.into_rgb8().into_raw())
        }
    }

    /// Like `from_dynamic` but never changes the channel layout; used where
    /// the transparency decision has already been made.
    pub fn from_dynamic_keep_alpha(image: DynamicImage) -> Result<Self, ImagingError> {
        let (width, height) = (image.width(), image.height());
        match image {
            DynamicImage::ImageRgba8(rgba) => {
                Raster::new(width, height, Channels::Rgba, rgba.into_raw())
            }
            other => Raster::new(width, height, Channels::Rgb, other.into_rgb8().into_raw()),
        }
    }

    pub fn has_transparency(&self) -> bool {
        self.channels == Channels::Rgba && self.data.chunks_exact(4).any(|p| p[3] != 255)
    }

    pub fn drop_opaque_alpha(self) -> Result<Self, ImagingError> {
        if self.channels != Channels::Rgba || self.has_transparency() {
            return Ok(self);
        }
        let rgb = self
            .data
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        Raster::new(self.width, self.height, Channels::Rgb, rgb)
    }

    /// Composites onto white: a transparent avatar forced into JPEG should
    /// look like it was placed on a page, not on black.
    pub fn flatten_onto_white(self) -> Result<Self, ImagingError> {
        if self.channels == Channels::Rgb {
            return Ok(self);
        }
        let rgb = self
            .data
            .chunks_exact(4)
            .flat_map(|p| {
                let a = u32::from(p[3]);
                let blend = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
                [blend(p[0]), blend(p[1]), blend(p[2])]
            })
            .collect();
        Raster::new(self.width, self.height, Channels::Rgb, rgb)
    }

    pub fn into_dynamic(self) -> Result<DynamicImage, ImagingError> {
        let (w, h) = (self.width, self.height);
        match self.channels {
            Channels::Rgb => RgbImage::from_raw(w, h, self.data).map(DynamicImage::ImageRgb8),
            Channels::Rgba => RgbaImage::from_raw(w, h, self.data).map(DynamicImage::ImageRgba8),
        }
        .ok_or_else(ImagingError::corrupt)
    }
}
