//! EXIF orientation. The pipeline crops and resizes in *stored* pixel space
//! and only rotates the (much smaller) largest rendition, so the user's
//! upright crop has to be mapped back into stored coordinates.

use image::metadata::Orientation;

use crate::imaging::ImagingError;
use crate::imaging::crop::CropRect;
use crate::imaging::raster::Raster;

pub(crate) fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

pub(crate) fn upright_dimensions(orientation: Orientation, width: u32, height: u32) -> (u32, u32) {
    if swaps_axes(orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

/// Stored pixel shown at upright position (ux, uy) of a stored
/// `width`x`height` image.
fn stored_point(orientation: Orientation, ux: u32, uy: u32, width: u32, height: u32) -> (u32, u32) {
    let (w1, h1) = (width - 1, height - 1);
    match orientation {
        Orientation::NoTransforms => (ux, uy),
        Orientation::FlipHorizontal => (w1 - ux, uy),
        Orientation::Rotate180 => (w1 - ux, h1 - uy),
        Orientation::FlipVertical => (ux, h1 - uy),
        Orientation::Rotate90FlipH => (uy, ux),
        Orientation::Rotate90 => (uy, h1 - ux),
        Orientation::Rotate270FlipH => (w1 - uy, h1 - ux),
        Orientation::Rotate270 => (w1 - uy, ux),
    }
}

/// Maps a square given in upright coordinates to the same pixels' square in
/// stored coordinates. The caller guarantees the crop lies inside the
/// upright image, which keeps every subtraction above non-negative.
pub(crate) fn crop_to_stored(
    orientation: Orientation,
    crop: &CropRect,
    width: u32,
    height: u32,
) -> Result<CropRect, ImagingError> {
    let last = crop.size() - 1;
    let (ax, ay) = stored_point(orientation, crop.x(), crop.y(), width, height);
    let (bx, by) = stored_point(orientation, crop.x() + last, crop.y() + last, width, height);
    CropRect::within(ax.min(bx), ay.min(by), crop.size(), width, height)
}

pub(crate) fn apply(raster: Raster, orientation: Orientation) -> Result<Raster, ImagingError> {
    if orientation == Orientation::NoTransforms {
        return Ok(raster);
    }
    let mut image = raster.into_dynamic()?;
    image.apply_orientation(orientation);
    Raster::from_dynamic_keep_alpha(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Orientation; 8] = [
        Orientation::NoTransforms,
        Orientation::FlipHorizontal,
        Orientation::Rotate180,
        Orientation::FlipVertical,
        Orientation::Rotate90FlipH,
        Orientation::Rotate90,
        Orientation::Rotate270FlipH,
        Orientation::Rotate270,
    ];

    /// The crop mapping must agree with image's own orientation code: crop in
    /// stored space then orient == orient then crop in upright space.
    #[test]
    fn crop_mapping_matches_pixel_transform() {
        let (w, h) = (7u32, 5u32);
        let data: Vec<u8> = (0..w * h).flat_map(|i| [i as u8, 0, 0]).collect();
        for o in ALL {
            let stored = Raster::new(w, h, crate::imaging::raster::Channels::Rgb, data.clone())
                .expect("test raster");
            let upright = apply(stored.clone(), o).expect("orient");
            let (uw, uh) = upright_dimensions(o, w, h);
            assert_eq!((upright.width, upright.height), (uw, uh));
            for (x, y, s) in [(0, 0, 2), (1, 2, 3), (uw - 2, uh - 2, 2)] {
                let crop = CropRect::within(x, y, s, uw, uh).expect("crop");
                let sc = crop_to_stored(o, &crop, w, h).expect("stored crop");
                let pick = |r: &Raster, cx: u32, cy: u32| {
                    let mut v: Vec<u8> = Vec::new();
                    for yy in cy..cy + s {
                        for xx in cx..cx + s {
                            v.push(r.data[((yy * r.width + xx) * 3) as usize]);
                        }
                    }
                    v.sort_unstable();
                    v
                };
                assert_eq!(
                    pick(&upright, x, y),
                    pick(&stored, sc.x(), sc.y()),
                    "{o:?} crop {x},{y},{s}"
                );
            }
        }
    }
}
