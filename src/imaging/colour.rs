//! Colour management: pixels described by an embedded ICC profile (Adobe
//! RGB, Display P3, a calibrated grey, ...) are converted to sRGB, the space
//! every browser assumes for an image without a profile. Renditions are
//! written without a profile, so without this step their colours would be
//! the original's numbers read as sRGB: washed out for wide-gamut photos.
//!
//! Why moxcms: a maintained pure-Rust CMS (matrix/TRC and LUT-based ICC v2
//! and v4 profiles), already compiled into the service as `image`'s
//! dependency; no C library to build, no `unsafe` in our code.

use moxcms::{ColorProfile, DataColorSpace, Layout, ParsingOptions, TransformOptions};

use crate::imaging::raster::{Channels, Raster};

/// Bounds on what a hostile profile can make the parser allocate. Real RGB
/// and grey profiles are a few KB with LUTs of at most 33^3 entries; CMYK
/// press profiles (several MB) are never applied here.
fn parsing_options() -> ParsingOptions {
    ParsingOptions {
        max_profile_size: 4 * 1024 * 1024,
        max_allowed_clut_size: 1_000_000,
        max_allowed_trc_size: 40_000,
    }
}

/// What happened to a raster's colours, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conversion {
    /// Converted from the embedded profile to sRGB.
    ToSrgb,
    /// No profile: the pixels are taken to be sRGB already.
    NoProfile,
    /// A profile we cannot apply (unparsable, or for colour data other than
    /// RGB or grey, such as CMYK): ignored, as browsers do, and the pixels
    /// are taken as sRGB. Rejecting the upload would be harsher than the
    /// flaw deserves.
    Ignored,
}

/// Converts `raster` (RGB or RGBA; grey sources arrive as R = G = B) from the
/// colour space its embedded `icc` profile describes to sRGB, in place.
/// Alpha is left as it is.
pub(crate) fn convert_to_srgb(raster: &mut Raster, icc: Option<&[u8]>) -> Conversion {
    let Some(icc) = icc else {
        return Conversion::NoProfile;
    };
    let profile = match ColorProfile::new_from_slice_with_options(icc, parsing_options()) {
        Ok(profile) => profile,
        Err(reason) => {
            tracing::debug!(?reason, "ignoring an ICC profile that does not parse");
            return Conversion::Ignored;
        }
    };
    let converted = match profile.color_space {
        DataColorSpace::Rgb => convert_rgb(raster, &profile),
        DataColorSpace::Gray => convert_grey(raster, &profile),
        other => Err(format!("{other:?} profile for RGB pixels")),
    };
    match converted {
        Ok(()) => Conversion::ToSrgb,
        Err(reason) => {
            tracing::debug!(%reason, "ignoring an ICC profile that cannot be applied");
            Conversion::Ignored
        }
    }
}

fn layout(channels: Channels) -> Layout {
    match channels {
        Channels::Rgb => Layout::Rgb,
        Channels::Rgba => Layout::Rgba,
    }
}

fn convert_rgb(raster: &mut Raster, profile: &ColorProfile) -> Result<(), String> {
    let layout = layout(raster.channels);
    let transform = profile
        .create_transform_8bit(
            layout,
            &ColorProfile::new_srgb(),
            layout,
            TransformOptions::default(),
        )
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; raster.data.len()];
    transform
        .transform(&raster.data, &mut out)
        .map_err(|e| e.to_string())?;
    raster.data = out;
    Ok(())
}

/// A grey profile describes one channel: the grey level (R of R = G = B)
/// goes through it, and the sRGB result is written back to all three. On
/// colour pixels (a file that contradicts itself) it is not applied: that
/// would throw their colour away.
fn convert_grey(raster: &mut Raster, profile: &ColorProfile) -> Result<(), String> {
    let bpp = raster.channels.count();
    let is_grey = raster
        .data
        .chunks_exact(bpp)
        .all(|p| p[0] == p[1] && p[1] == p[2]);
    if !is_grey {
        return Err("grey profile for colour pixels".to_owned());
    }
    let (grey_layout, grey_bpp) = match raster.channels {
        Channels::Rgb => (Layout::Gray, 1),
        Channels::Rgba => (Layout::GrayAlpha, 2),
    };
    let grey: Vec<u8> = raster
        .data
        .chunks_exact(bpp)
        .flat_map(|p| [p[0], p[bpp - 1]].into_iter().take(grey_bpp))
        .collect();
    let transform = profile
        .create_transform_8bit(
            grey_layout,
            &ColorProfile::new_srgb(),
            layout(raster.channels),
            TransformOptions::default(),
        )
        .map_err(|e| e.to_string())?;
    transform
        .transform(&grey, &mut raster.data)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(rgb: [u8; 3], channels: Channels) -> Raster {
        let pixel = [rgb[0], rgb[1], rgb[2], 128];
        let data = (0..16)
            .flat_map(|_| pixel.into_iter().take(channels.count()))
            .collect();
        Raster::new(4, 4, channels, data).expect("raster")
    }

    fn icc(profile: &ColorProfile) -> Vec<u8> {
        profile.encode().expect("encode profile")
    }

    #[test]
    fn display_p3_red_becomes_the_most_saturated_srgb_red() {
        for channels in [Channels::Rgb, Channels::Rgba] {
            let mut raster = solid([200, 40, 30], channels);
            let p3 = icc(&ColorProfile::new_display_p3());
            assert_eq!(convert_to_srgb(&mut raster, Some(&p3)), Conversion::ToSrgb);
            let px = &raster.data[..channels.count()];
            // P3 (200, 40, 30) is more saturated than sRGB can show: red
            // rises, green and blue fall.
            assert!(px[0] > 205 && px[1] < 30 && px[2] < 25, "{px:?}");
            if channels == Channels::Rgba {
                assert_eq!(px[3], 128, "alpha untouched");
            }
        }
    }

    #[test]
    fn srgb_profile_changes_nothing_visible() {
        let mut raster = solid([200, 40, 30], Channels::Rgb);
        let srgb = icc(&ColorProfile::new_srgb());
        assert_eq!(
            convert_to_srgb(&mut raster, Some(&srgb)),
            Conversion::ToSrgb
        );
        for (got, want) in raster.data[..3].iter().zip([200u8, 40, 30]) {
            assert!(got.abs_diff(want) <= 1, "{:?}", &raster.data[..3]);
        }
    }

    #[test]
    fn grey_profile_keeps_pixels_grey() {
        let mut raster = solid([100, 100, 100], Channels::Rgb);
        let gamma_1_8 = icc(&ColorProfile::new_gray_with_gamma(1.8));
        assert_eq!(
            convert_to_srgb(&mut raster, Some(&gamma_1_8)),
            Conversion::ToSrgb
        );
        let px = &raster.data[..3];
        assert!(px[0] == px[1] && px[1] == px[2], "{px:?}");
        // Grey 100 at gamma 1.8 is lighter than the same number in sRGB.
        assert!(px[0] > 110, "{px:?}");
    }

    #[test]
    fn grey_profile_on_colour_pixels_is_ignored() {
        let mut raster = solid([200, 40, 30], Channels::Rgb);
        let grey = icc(&ColorProfile::new_gray_with_gamma(1.8));
        assert_eq!(
            convert_to_srgb(&mut raster, Some(&grey)),
            Conversion::Ignored
        );
        assert_eq!(&raster.data[..3], &[200, 40, 30]);
    }

    #[test]
    fn junk_and_missing_profiles_leave_pixels_alone() {
        let mut raster = solid([200, 40, 30], Channels::Rgb);
        assert_eq!(convert_to_srgb(&mut raster, None), Conversion::NoProfile);
        assert_eq!(
            convert_to_srgb(&mut raster, Some(b"not a profile at all")),
            Conversion::Ignored
        );
        let mut truncated = icc(&ColorProfile::new_display_p3());
        truncated.truncate(200);
        assert_eq!(
            convert_to_srgb(&mut raster, Some(&truncated)),
            Conversion::Ignored
        );
        assert_eq!(&raster.data[..3], &[200, 40, 30]);
    }
}
