//! A square crop, as the contract's CropRect, parsed from `X,Y,SIZE`.

use std::str::FromStr;

use crate::pb;

/// A square crop in pixels of the upright original: left edge, top edge, side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub size: u32,
}

impl Crop {
    pub fn new(x: u32, y: u32, size: u32) -> Crop {
        Crop { x, y, size }
    }
}

impl From<Crop> for pb::CropRect {
    fn from(crop: Crop) -> Self {
        pb::CropRect {
            x: crop.x,
            y: crop.y,
            size: crop.size,
        }
    }
}

impl FromStr for Crop {
    type Err = String;

    /// `X,Y,SIZE`, e.g. `100,0,400`. Whether it fits the image is the server's call.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let numbers: Vec<&str> = text.split(',').map(str::trim).collect();
        let [x, y, size] = numbers.as_slice() else {
            return Err(format!("expected X,Y,SIZE, got {text:?}"));
        };
        let parse = |name: &str, value: &str| {
            value
                .parse::<u32>()
                .map_err(|_| format!("{name} must be a whole number of pixels, got {value:?}"))
        };
        Ok(Crop {
            x: parse("X", x)?,
            y: parse("Y", y)?,
            size: parse("SIZE", size)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_x_y_size() {
        assert_eq!("100, 0,400".parse(), Ok(Crop::new(100, 0, 400)));
    }

    #[test]
    fn refuses_two_numbers_and_negatives() {
        assert!("1,2".parse::<Crop>().is_err());
        assert!("1,-2,3".parse::<Crop>().is_err());
    }
}
