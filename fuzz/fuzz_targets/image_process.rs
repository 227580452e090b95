//! The image entry point an upload goes through: sniff, header checks, decode, colour
//! conversion, orientation, crop, resize and encode, with the service's default limits
//! and renditions (`Config::default()`), exactly as `profiles::Processor::process`
//! calls it.
//!
//! Besides "no panic" (a caught decoder panic still aborts here: libfuzzer-sys's panic
//! hook fires before `catch_unwind`, which is what we want to hear about), it checks
//! what a client relies on: hostile bytes are refused as the upload's fault (never an
//! encoder failure, which the service reports as INTERNAL), and what is accepted comes
//! out as square renditions of the advertised edges that decode.
#![no_main]

// Everything this target takes from the service crate.
use profile_image::Config;
use profile_image::imaging::{
    ImageFormat, ImagingError, Limits, Processed, RenditionSpec, SourceFormat, probe, process,
    sniff,
};

use libfuzzer_sys::fuzz_target;

/// The limits and renditions the service builds from its configuration, with every
/// setting at its default.
fn configured() -> (Limits, RenditionSpec) {
    let config = Config::default();
    (config.image_limits(), config.rendition_spec())
}

/// FNV-1a: a cheap, stable function of the input, so one input always gets the same crop.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Half the inputs take the default (largest centred) crop; the others an explicit
/// square inside the upright image, which exercises the upright-to-stored mapping and
/// libjpeg-turbo's cropped, scaled decode; a few a square that does not fit.
fn crop_for(bytes: &[u8], upright: Option<(u32, u32)>) -> Option<(u32, u32, u32)> {
    let hash = fnv1a(bytes);
    let (width, height) = upright?;
    let pick = |salt: u32, below: u32| ((hash >> salt) as u32) % below.max(1);
    match hash % 8 {
        0..=3 => None,
        4 => Some((pick(8, width), pick(24, height), width.min(height) + 1)),
        _ => {
            let size = 1 + pick(40, width.min(height));
            Some((pick(8, width - size + 1), pick(24, height - size + 1), size))
        }
    }
}

fn check_accepted(out: &Processed, spec: &RenditionSpec, limits: &Limits) {
    assert!(out.width > 0 && out.height > 0);
    assert!(out.width <= limits.max_side && out.height <= limits.max_side);
    let crop = out.crop;
    assert!(crop.size() > 0);
    assert!(u64::from(crop.x()) + u64::from(crop.size()) <= u64::from(out.width));
    assert!(u64::from(crop.y()) + u64::from(crop.size()) <= u64::from(out.height));
    let edges: Vec<u32> = out.renditions.iter().map(|r| r.edge).collect();
    assert_eq!(
        edges,
        spec.edges(crop.size()),
        "renditions are the spec's edges"
    );
    for rendition in &out.renditions {
        let expected = match rendition.format {
            ImageFormat::Jpeg => SourceFormat::Jpeg,
            ImageFormat::Png => SourceFormat::Png,
            ImageFormat::Webp => SourceFormat::Webp,
        };
        assert_eq!(sniff(&rendition.bytes), Some(expected));
        let format = if out.has_alpha {
            ImageFormat::Png
        } else {
            ImageFormat::Jpeg
        };
        assert_eq!(rendition.format, format, "PNG exactly when there is alpha");
        let decoded = image::load_from_memory(&rendition.bytes).expect("our output decodes");
        assert_eq!(
            (decoded.width(), decoded.height()),
            (rendition.edge, rendition.edge),
            "renditions are squares of their edge"
        );
    }
}

fuzz_target!(|bytes: &[u8]| {
    let (limits, spec) = configured();
    let probed = probe(bytes, &limits);
    let crop = crop_for(bytes, probed.as_ref().ok().map(|&(_, w, h)| (w, h)));
    match process(bytes, crop, &limits, &spec) {
        Ok(out) => {
            let (format, width, height) = probed.expect("probe accepts what process accepts");
            assert_eq!(
                (out.source_format, out.width, out.height),
                (format, width, height)
            );
            if let Some((x, y, size)) = crop {
                assert_eq!((out.crop.x(), out.crop.y(), out.crop.size()), (x, y, size));
            }
            check_accepted(&out, &spec, &limits);
        }
        Err(ImagingError::Encode(message)) => {
            panic!("an upload was refused as an encoder failure (INTERNAL): {message}")
        }
        Err(ImagingError::CropOutOfBounds { width, height }) => {
            assert!(crop.is_some(), "the default crop always fits");
            let (_, w, h) = probed.expect("a crop is only checked after the header");
            // Anything else means the upright crop was mapped outside the stored image.
            assert_eq!((width, height), (w, h), "refused against the upright size");
        }
        Err(ImagingError::InvalidFormat(_) | ImagingError::TooLarge(_)) => {}
    }
});
