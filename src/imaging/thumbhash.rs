//! ThumbHash (https://evanw.github.io/thumbhash/): ~25 bytes that decode to a blurred
//! preview with the image's aspect ratio and average colour, for clients to paint
//! while the real bytes load.

use crate::imaging::ImagingError;
use crate::imaging::decode::guarded;
use crate::imaging::raster::{Channels, Raster};
use crate::imaging::resize::{Shrinker, SourceSquare};

/// The largest side ThumbHash encodes. The hash keeps at most 7 DCT coefficients a
/// side (3 cycles across the image at most), which 16 pixels (8 cycles) sample without
/// loss a blurred preview shows. The encoder sums every pixel once per coefficient
/// (about 40 of them), serially: from the 64 px rendition it was 16% of a set's CPU in
/// the sets bench, 5% from 32 px.
const MAX_SIDE: u32 = 16;

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

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::FilterType;

    fn corpus(rel: &str) -> Vec<u8> {
        let path = format!("{}/../shared/corpus/{rel}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("corpus file {path}: {e}"))
    }

    /// Mean absolute difference of two hashes' decoded previews, per channel (0-255).
    fn preview_difference(a: &[u8], b: &[u8]) -> f64 {
        let (wa, ha, a) = thumbhash::thumb_hash_to_rgba(a).expect("valid hash");
        let (wb, hb, b) = thumbhash::thumb_hash_to_rgba(b).expect("valid hash");
        assert_eq!((wa, ha), (wb, hb));
        let total: u64 = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| u64::from(x.abs_diff(y)))
            .sum();
        total as f64 / a.len() as f64
    }

    #[test]
    fn the_small_sample_previews_like_the_largest_the_encoder_takes() {
        for path in [
            "photos/rocket.jpg",
            "photos/astronaut_circle.png",
            "orientation/Landscape_1.jpg",
        ] {
            let image = image::load_from_memory(&corpus(path)).expect("corpus decodes");
            let side = image.width().min(image.height());
            let square = image.crop_imm(0, 0, side, side);
            let reference = square
                .resize_exact(100, 100, FilterType::Triangle)
                .into_rgba8();
            let reference = thumbhash::rgba_to_thumb_hash(100, 100, reference.as_raw());
            let raster = Raster::from_dynamic_keep_alpha(square).expect("raster");
            let ours = of_raster(&raster, &mut Shrinker::new()).expect("hash");
            let difference = preview_difference(&ours, &reference);
            assert!(
                difference < 2.0,
                "{path}: previews differ by {difference:.2} per channel"
            );
        }
    }
}
