use crate::imaging::ImagingError;

/// A square region of an image. Constructors validate it, so holding a
/// `CropRect` means it is non-empty and fits the image it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropRect {
    x: u32,
    y: u32,
    size: u32,
}

impl CropRect {
    /// Validates a user-requested square against an image of `width`x`height`.
    pub fn within(
        x: u32,
        y: u32,
        size: u32,
        width: u32,
        height: u32,
    ) -> Result<Self, ImagingError> {
        let fits =
            |start: u32, extent: u32| start.checked_add(size).is_some_and(|end| end <= extent);
        if size == 0 || !fits(x, width) || !fits(y, height) {
            return Err(ImagingError::CropOutOfBounds { width, height });
        }
        Ok(CropRect { x, y, size })
    }

    /// The biggest square that fits, centred (odd leftovers go to the
    /// right/bottom edge).
    pub fn largest_centred_square(width: u32, height: u32) -> Result<Self, ImagingError> {
        let size = width.min(height);
        CropRect::within((width - size) / 2, (height - size) / 2, size, width, height)
    }

    pub fn x(&self) -> u32 {
        self.x
    }

    pub fn y(&self) -> u32 {
        self.y
    }

    pub fn size(&self) -> u32 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centred_square() {
        let c = CropRect::largest_centred_square(4032, 3024).expect("crop");
        assert_eq!((c.x(), c.y(), c.size()), (504, 0, 3024));
        let c = CropRect::largest_centred_square(80, 101).expect("crop");
        assert_eq!((c.x(), c.y(), c.size()), (0, 10, 80));
        assert!(CropRect::largest_centred_square(0, 10).is_err());
    }

    #[test]
    fn rejects_out_of_bounds() {
        let oob = Err(ImagingError::CropOutOfBounds {
            width: 100,
            height: 80,
        });
        assert_eq!(CropRect::within(0, 0, 0, 100, 80), oob);
        assert_eq!(CropRect::within(21, 0, 80, 100, 80), oob);
        assert_eq!(CropRect::within(0, 1, 80, 100, 80), oob);
        assert_eq!(CropRect::within(u32::MAX, 0, 2, 100, 80), oob);
        assert!(CropRect::within(20, 0, 80, 100, 80).is_ok());
    }
}
