//! Tests of the imaging pipeline on generated and corpus images.

use super::*;
use std::time::{Duration, Instant};

fn corpus(rel: &str) -> Vec<u8> {
    let path = format!("{}/../shared/corpus/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("corpus file {path}: {e}"))
}

fn small_spec(edge: u32) -> RenditionSpec {
    RenditionSpec {
        sizes: vec![edge],
        full_max_edge: edge,
        jpeg_quality: 90,
    }
}

fn decode_rgba(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes)
        .expect("our own output decodes")
        .into_rgba8()
}

fn mean_abs_diff(a: &image::RgbaImage, b: &image::RgbaImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

fn png_with_ihdr(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    png.extend_from_slice(b"\0\0\0\0IEND\xaeB`\x82");
    png
}

/// A smooth gradient (red = 2x, green = 3y) that lossy encoding keeps.
fn encoded_png(width: u32, height: u32) -> Vec<u8> {
    let data = (0..width * height)
        .flat_map(|i| [(2 * (i % width)) as u8, (3 * (i / width)) as u8, 90])
        .collect();
    let raster = raster::Raster::new(width, height, Channels::Rgb, data).expect("raster");
    encode::encode_at(&raster, ImageFormat::Png, 90).expect("png")
}

#[test]
fn rendition_edges_never_upscale_and_dedupe() {
    let spec = RenditionSpec::default();
    assert_eq!(spec.edges(3024), vec![64, 128, 256, 512, 1024]);
    assert_eq!(spec.edges(80), vec![64, 80]);
    assert_eq!(spec.edges(10), vec![10]);
}

#[test]
fn rejects_empty_oversized_and_unknown() {
    let limits = Limits::default();
    let spec = RenditionSpec::default();
    assert!(matches!(
        process(b"", None, &limits, &spec),
        Err(ImagingError::InvalidFormat(_))
    ));
    let small = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        process(&corpus("photos/rocket.jpg"), None, &small, &spec),
        Err(ImagingError::TooLarge(_))
    ));
    for junk in [
        &b"<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>"[..],
        b"II*\x00\x08\x00\x00\x00",
        b"BM\x36\x00\x0c\x00",
        b"<html></html>",
    ] {
        assert!(matches!(
            process(junk, None, &limits, &spec),
            Err(ImagingError::InvalidFormat(_))
        ));
    }
}

#[test]
fn huge_png_header_rejected_without_decoding() {
    let png = png_with_ihdr(100_000, 100_000);
    let start = Instant::now();
    let limits = Limits::default();
    assert!(matches!(
        process(&png, None, &limits, &RenditionSpec::default()),
        Err(ImagingError::TooLarge(_))
    ));
    assert!(matches!(
        probe(&png, &limits),
        Err(ImagingError::TooLarge(_))
    ));
    // Too many pixels although each side is allowed.
    assert!(matches!(
        probe(&png_with_ihdr(8000, 8000), &limits),
        Err(ImagingError::TooLarge(_))
    ));
    assert!(start.elapsed() < Duration::from_millis(50));
}

#[test]
fn huge_gif_rejected() {
    let limits = Limits::default();
    // Huge logical screen.
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[0x60, 0xEA, 0x60, 0xEA, 0, 0, 0]);
    gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
    assert!(matches!(
        probe(&gif, &limits),
        Err(ImagingError::TooLarge(_))
    ));
    // Small logical screen fronting a 60000x60000 frame.
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[10, 0, 10, 0, 0, 0, 0]);
    gif.extend_from_slice(&[0x21, 0xF9, 4, 0, 0, 0, 0, 0]);
    gif.extend_from_slice(&[
        0x2C, 0, 0, 0, 0, 0x60, 0xEA, 0x60, 0xEA, 0, 2, 2, 0x4C, 0x01, 0, 0x3B,
    ]);
    let start = Instant::now();
    assert!(matches!(
        process(&gif, None, &limits, &RenditionSpec::default()),
        Err(ImagingError::TooLarge(_))
    ));
    assert!(start.elapsed() < Duration::from_millis(50));
}

#[test]
fn orientation_corpus_is_upright_and_matches_reference() {
    let limits = Limits::default();
    for kind in ["Landscape", "Portrait"] {
        let reference = process(
            &corpus(&format!("orientation/{kind}_1.jpg")),
            None,
            &limits,
            &small_spec(48),
        )
        .expect("reference");
        let reference = decode_rgba(&reference.renditions[0].bytes);
        for n in 0..=8 {
            let bytes = corpus(&format!("orientation/{kind}_{n}.jpg"));
            let (_, pw, ph) = probe(&bytes, &limits).expect("probe");
            let out = process(&bytes, None, &limits, &small_spec(48)).expect("process");
            assert_eq!((out.width, out.height), (pw, ph));
            if kind == "Landscape" {
                assert!(out.width > out.height, "{kind}_{n}: {pw}x{ph}");
            } else {
                assert!(out.height > out.width, "{kind}_{n}: {pw}x{ph}");
            }
            let diff = mean_abs_diff(&decode_rgba(&out.renditions[0].bytes), &reference);
            assert!(diff < 6.0, "{kind}_{n}: mean abs diff {diff}");
        }
    }
}

/// An off-centre crop exercises the upright->stored mapping together with
/// the fractional crop box of a 1/8-scale JPEG decode.
#[test]
fn explicit_crop_follows_orientation() {
    let limits = Limits::default();
    let crop = Some((900, 150, 800));
    let reference = process(
        &corpus("orientation/Landscape_1.jpg"),
        crop,
        &limits,
        &small_spec(64),
    )
    .expect("reference");
    let reference = decode_rgba(&reference.renditions[0].bytes);
    for n in 2..=8 {
        let out = process(
            &corpus(&format!("orientation/Landscape_{n}.jpg")),
            crop,
            &limits,
            &small_spec(64),
        )
        .expect("process");
        assert_eq!(
            (out.crop.x(), out.crop.y(), out.crop.size()),
            (900, 150, 800)
        );
        let diff = mean_abs_diff(&decode_rgba(&out.renditions[0].bytes), &reference);
        assert!(diff < 6.0, "Landscape_{n}: mean abs diff {diff}");
    }
}

/// The DCT-scaled decode must give the same picture as a full decode.
#[test]
fn scaled_jpeg_decode_matches_full_decode() {
    let bytes = corpus("camera/Reconyx_HC500_Hyperfire.jpg");
    let out = process(&bytes, None, &Limits::default(), &small_spec(128)).expect("process");
    let full = image::load_from_memory(&bytes).expect("decode").into_rgb8();
    let (w, h) = full.dimensions();
    let side = w.min(h);
    let square = image::imageops::crop_imm(&full, (w - side) / 2, (h - side) / 2, side, side);
    let expected = image::DynamicImage::ImageRgb8(square.to_image())
        .resize_exact(128, 128, image::imageops::FilterType::Lanczos3)
        .into_rgba8();
    let diff = mean_abs_diff(&decode_rgba(&out.renditions[0].bytes), &expected);
    assert!(diff < 4.0, "mean abs diff {diff}");
}

#[test]
fn real_transparency_gives_png_with_transparent_corners() {
    let out = process(
        &corpus("photos/astronaut_circle.png"),
        None,
        &Limits::default(),
        &RenditionSpec::default(),
    )
    .expect("process");
    assert!(out.has_alpha);
    assert_eq!(
        out.renditions.iter().map(|r| r.edge).collect::<Vec<_>>(),
        vec![64, 128, 256, 512]
    );
    for r in &out.renditions {
        assert_eq!(r.format, ImageFormat::Png);
        let img = decode_rgba(&r.bytes);
        assert_eq!(img.dimensions(), (r.edge, r.edge));
        assert_eq!(img.get_pixel(0, 0)[3], 0);
        assert_eq!(img.get_pixel(r.edge - 1, r.edge - 1)[3], 0);
        assert_eq!(img.get_pixel(r.edge / 2, r.edge / 2)[3], 255);
    }
}

#[test]
fn opaque_alpha_channel_gives_jpeg() {
    let out = process(
        &corpus("photos/logo.png"),
        None,
        &Limits::default(),
        &RenditionSpec::default(),
    )
    .expect("process");
    assert!(!out.has_alpha);
    assert!(
        out.renditions
            .iter()
            .all(|r| r.format == ImageFormat::Jpeg && sniff(&r.bytes) == Some(SourceFormat::Jpeg))
    );
}

#[test]
fn animated_gif_uses_first_frame() {
    let bytes = corpus("photos/no_time_for_that_tiny.gif");
    let out =
        process(&bytes, None, &Limits::default(), &RenditionSpec::default()).expect("process");
    assert_eq!(out.source_format, SourceFormat::Gif);
    let side = out.width.min(out.height);
    assert_eq!(out.renditions.last().map(|r| r.edge), Some(side.min(1024)));
    let first = image::load_from_memory(&bytes).expect("gif").into_rgba8();
    assert_eq!(first.dimensions(), (out.width, out.height));
}

#[test]
fn crop_bounds_and_no_upscaling() {
    let png = encoded_png(100, 80);
    let limits = Limits::default();
    let spec = RenditionSpec::default();
    for bad in [
        (0, 0, 81),
        (21, 0, 80),
        (0, 0, 0),
        (99, 79, 2),
        (u32::MAX, 0, 10),
    ] {
        assert_eq!(
            process(&png, Some(bad), &limits, &spec).err(),
            Some(ImagingError::CropOutOfBounds {
                width: 100,
                height: 80
            }),
            "{bad:?}"
        );
    }
    let out = process(&png, None, &limits, &spec).expect("process");
    assert_eq!((out.crop.x(), out.crop.y(), out.crop.size()), (10, 0, 80));
    assert_eq!(
        out.renditions.iter().map(|r| r.edge).collect::<Vec<_>>(),
        vec![64, 80]
    );
    let out = process(&png, Some((20, 10, 50)), &limits, &spec).expect("process");
    assert_eq!(
        out.renditions.iter().map(|r| r.edge).collect::<Vec<_>>(),
        vec![50]
    );
    let img = decode_rgba(&out.renditions[0].bytes);
    assert_eq!(img.dimensions(), (50, 50));
    // Rendition pixel (x, y) is source pixel (20 + x, 10 + y), whose red
    // is twice its column and green three times its row.
    for (x, y) in [(0u32, 0u32), (25, 25), (49, 49)] {
        let got = img.get_pixel(x, y);
        let want = [2 * (20 + x), 3 * (10 + y)];
        for (channel, want) in want.into_iter().enumerate() {
            let diff = (i64::from(got[channel]) - i64::from(want)).abs();
            assert!(
                diff < 8,
                "({x},{y}): got {got:?}, want {want} in channel {channel}"
            );
        }
    }
}

#[test]
fn outputs_carry_no_metadata() {
    let bytes = corpus("camera/iphone_hdr_NO.jpg");
    assert!(bytes.windows(4).any(|w| w == b"Exif"));
    let out =
        process(&bytes, None, &Limits::default(), &RenditionSpec::default()).expect("process");
    for r in &out.renditions {
        assert!(!r.bytes.windows(4).any(|w| w == b"Exif"), "edge {}", r.edge);
        assert!(!r.bytes.windows(3).any(|w| w == b"GPS"), "edge {}", r.edge);
    }
    let gps = corpus("camera/45-gps_ifd.jpg");
    let out = process(&gps, None, &Limits::default(), &small_spec(256)).expect("process");
    assert!(!out.renditions[0].bytes.windows(4).any(|w| w == b"Exif"));
}

#[test]
fn broken_input_errors_without_panicking() {
    let limits = Limits::default();
    let spec = small_spec(64);
    let jpeg = corpus("photos/rocket.jpg");
    for cut in [3, 20, 200, jpeg.len() / 4, jpeg.len() / 2, jpeg.len() - 10] {
        // Partially decodable JPEGs may be accepted; the point is no panic.
        let result = process(&jpeg[..cut], None, &limits, &spec);
        if cut <= 200 {
            assert!(result.is_err(), "cut at {cut}");
        }
    }
    let mut noisy = jpeg.clone();
    for i in (600..noisy.len()).step_by(97) {
        noisy[i] ^= 0x5A;
    }
    let _ = process(&noisy, None, &limits, &spec);
    let random: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    assert!(process(&random, None, &limits, &spec).is_err());
    assert!(process(&[0u8; 1024], None, &limits, &spec).is_err());
    let mut fake = b"\xFF\xD8\xFF".to_vec();
    fake.extend_from_slice(&random);
    assert!(process(&fake, None, &limits, &spec).is_err());
    let png = encoded_png(40, 40);
    assert!(process(&png[..png.len() / 2], None, &limits, &spec).is_err());
}

#[test]
fn render_makes_one_rendition_from_the_original() {
    let original = corpus("photos/astronaut_circle.png");
    let limits = Limits::default();
    let webp = render(&original, (0, 0, 512), 128, ImageFormat::Webp, &limits, 82).expect("render");
    assert_eq!((webp.edge, webp.format), (128, ImageFormat::Webp));
    let img = decode_rgba(&webp.bytes);
    assert_eq!(img.dimensions(), (128, 128));
    assert_eq!(img.get_pixel(0, 0)[3], 0, "alpha kept");
    let capped = render(
        &original,
        (100, 100, 200),
        256,
        ImageFormat::Jpeg,
        &limits,
        82,
    )
    .expect("render");
    assert_eq!(capped.edge, 200, "never upscaled past the crop");
    assert_eq!(sniff(&capped.bytes), Some(SourceFormat::Jpeg));
}

#[test]
fn transcode_between_formats() {
    let out = process(
        &corpus("photos/astronaut_circle.png"),
        None,
        &Limits::default(),
        &small_spec(64),
    )
    .expect("process");
    let png = &out.renditions[0].bytes;
    let webp = transcode(png, ImageFormat::Webp, 85).expect("webp");
    assert_eq!(sniff(&webp), Some(SourceFormat::Webp));
    assert_eq!(decode_rgba(&webp).get_pixel(0, 0)[3], 0);
    let jpeg = transcode(png, ImageFormat::Jpeg, 85).expect("jpeg");
    assert_eq!(sniff(&jpeg), Some(SourceFormat::Jpeg));
    // Transparent corners become white rather than black.
    assert!(decode_rgba(&jpeg).get_pixel(0, 0)[0] > 240);
    let back = transcode(&jpeg, ImageFormat::Png, 85).expect("png");
    assert_eq!(decode_rgba(&back).dimensions(), (64, 64));
    assert!(transcode(b"nope", ImageFormat::Png, 85).is_err());
}

#[test]
fn other_inputs_process() {
    let limits = Limits::default();
    let spec = RenditionSpec::default();
    for (file, w, h) in [
        ("photos/chelsea.png", 451, 300),
        ("photos/coffee.png", 600, 400),
        ("photos/hubble_deep_field.jpg", 1000, 872),
        ("camera/olympus_12mp.jpg", 4032, 3024),
    ] {
        let out = process(&corpus(file), None, &limits, &spec).expect(file);
        assert_eq!((out.width, out.height), (w, h), "{file}");
        let largest = out.renditions.last().expect("renditions");
        assert_eq!(largest.edge, w.min(h).min(1024), "{file}");
    }
    let webp = transcode(&encoded_png(120, 90), ImageFormat::Webp, 85).expect("webp");
    let out = process(&webp, None, &limits, &spec).expect("webp input");
    assert_eq!(
        (out.source_format, out.width, out.height),
        (SourceFormat::Webp, 120, 90)
    );
}

/// Grayscale JPEGs go through libjpeg-turbo's scaled, cropped decode
/// (8 px MCUs) and come out as grey RGB with the crop where it belongs.
#[test]
fn grayscale_jpeg_scaled_and_cropped() {
    let (w, h) = (1600u32, 1200u32);
    let luma = image::GrayImage::from_fn(w, h, |x, _| image::Luma([(x * 255 / w) as u8]));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&luma)
        .expect("encode");
    let out = process(
        &jpeg,
        Some((800, 100, 800)),
        &Limits::default(),
        &small_spec(256),
    )
    .expect("process");
    let img = decode_rgba(&out.renditions.last().expect("rendition").bytes);
    assert_eq!(img.dimensions(), (256, 256));
    for x in [0u32, 128, 255] {
        let px = img.get_pixel(x, 128);
        let want = (800 + x * 800 / 256) * 255 / w;
        assert!(
            px[0].abs_diff(px[1]) <= 2 && px[1].abs_diff(px[2]) <= 2,
            "{px:?}"
        );
        assert!(
            u32::from(px[0]).abs_diff(want) <= 6,
            "x={x}: {px:?} want {want}"
        );
    }
}

/// A grey JPEG with a grey ICC profile (gamma 1.8) stays grey and comes
/// out lighter, as a colour-managed viewer shows it.
#[test]
fn grey_jpeg_with_grey_profile_is_converted_and_stays_grey() {
    use image::ImageEncoder;
    let luma = image::GrayImage::from_pixel(200, 200, image::Luma([100]));
    let gamma_1_8 = moxcms::ColorProfile::new_gray_with_gamma(1.8)
        .encode()
        .expect("profile");
    let encode = |icc: Option<Vec<u8>>| {
        let mut jpeg = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
        if let Some(icc) = icc {
            encoder.set_icc_profile(icc).expect("icc");
        }
        encoder
            .write_image(luma.as_raw(), 200, 200, image::ExtendedColorType::L8)
            .expect("encode");
        jpeg
    };
    let centre = |jpeg: &[u8]| {
        let out = process(jpeg, None, &Limits::default(), &small_spec(64)).expect("process");
        *decode_rgba(&out.renditions[0].bytes).get_pixel(32, 32)
    };
    let plain = centre(&encode(None));
    let managed = centre(&encode(Some(gamma_1_8)));
    assert!(plain[0].abs_diff(100) <= 2, "{plain:?}");
    assert!(
        managed[0].abs_diff(managed[1]) <= 2 && managed[1].abs_diff(managed[2]) <= 2,
        "{managed:?}"
    );
    assert!(managed[0] > 110, "{managed:?}");
}

#[test]
fn dct_factor_keeps_the_crop_at_least_as_big_as_needed() {
    assert_eq!(turbo::dct_eighths(3024, 1024), 3);
    assert_eq!(turbo::dct_eighths(2048, 1024), 4);
    assert_eq!(turbo::dct_eighths(1000, 1000), 8);
    assert_eq!(turbo::dct_eighths(8192, 64), 1);
    for crop in [100u32, 1023, 1025, 3000, 4032, 8191] {
        for needed in [64u32, 512, 1024] {
            let n = turbo::dct_eighths(crop, needed.min(crop));
            assert!(u64::from(crop) * n as u64 >= u64::from(needed.min(crop)) * 8);
        }
    }
}
