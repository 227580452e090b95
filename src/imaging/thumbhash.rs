//! ThumbHash (https://evanw.github.io/thumbhash/): ~25 bytes that decode to a blurred
//! preview with the image's aspect ratio and average colour, for clients to paint
//! while the real bytes load.

use crate::imaging::ImagingError;
use crate::imaging::decode::guarded;
use crate::imaging::raster::{Channels, Raster};
use crate::imaging::resize::{Shrinker, SourceSquare};

/// The largest side ThumbHash encodes. The hash keeps at most 7 DCT coefficients a
/// side, which 32 pixels sample with room to spare, and the encoder sums every pixel
/// once per coefficient (about 40 of them): from the 64 px rendition it was 16% of a
/// set's CPU in the sets bench, a quarter of that from 32 px.
const MAX_SIDE: u32 = 32;

/// The ThumbHash of a (square, cropped) raster.
pub(crate) fn of_raster(raster: &Raster, shrinker: &mut Shrinker) -> Result<Vec<u8>, ImagingError> {
    let small;
    let source = if raster.width > MAX_SIDE || raster.height > MAX_SIDE {
        small = shrinker.shrink(raster, SourceSquare::whole(raster), MAX_SIDE)?;
        &small
    } else {
        raster
    };
    let rgba = match source.channels {
        Channels::Rgba => source.data.clone(),
        Channels::Rgb => source
            .data
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
    };
    Ok(thumbhash::rgba_to_thumb_hash(
        source.width as usize,
        source.height as usize,
        &rgba,
    ))
}

/// The ThumbHash of one of our encoded renditions: for media items made before
/// thumbhashes were (their smallest rendition is decoded again).
pub fn thumbhash_of_rendition(encoded: &[u8]) -> Result<Vec<u8>, ImagingError> {
    guarded(|| {
        let image = image::load_from_memory(encoded).map_err(ImagingError::from_image)?;
        let raster = Raster::from_dynamic_keep_alpha(image)?;
        of_raster(&raster, &mut Shrinker::new())
    })
}
