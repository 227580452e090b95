//! The image pipeline through the API: orientation, privacy, transparency, hostile files.

mod common;

use common::*;
use image::GenericImageView;
use profile_image::pb::{self, ImageFormat};
use tonic::Code;

/// Mean absolute difference of two equally sized images, per channel, 0-255.
fn mean_difference(a: &image::DynamicImage, b: &image::DynamicImage) -> f64 {
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

#[tokio::test]
async fn all_orientation_examples_come_out_upright() {
    let server = Server::start().await;
    let mut client = server.client().await;
    for shape in ["Landscape", "Portrait"] {
        let mut reference = None;
        for n in 0..=8 {
            let user = format!("{shape}-{n}");
            let set = set_inline(
                &mut client,
                &user,
                corpus_bytes(&format!("orientation/{shape}_{n}.jpg")),
            )
            .await
            .unwrap();
            let (w, h) = (set.original_width, set.original_height);
            match shape {
                "Landscape" => assert_eq!((w, h), (1800, 1200), "{user} upright dims"),
                _ => assert_eq!((w, h), (1200, 1800), "{user} upright dims"),
            }
            let served = decode(&get(&mut client, &user, 64, ImageFormat::Png).await.unwrap());
            match &reference {
                None => reference = Some(served),
                Some(reference) => {
                    let diff = mean_difference(reference, &served);
                    assert!(
                        diff < 12.0,
                        "{user} differs from {shape}_0 by {diff:.1}: not upright"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn nothing_served_carries_exif_or_gps() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let original = corpus_bytes("camera/iphone_hdr_NO.jpg");
    assert!(
        original.windows(4).any(|w| w == b"Exif"),
        "the test file has EXIF"
    );
    set_inline(&mut client, "tourist", original).await.unwrap();
    for format in [
        ImageFormat::Unspecified,
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Webp,
    ] {
        for size in [0, 64, 256, 1024] {
            let got = get(&mut client, "tourist", size, format).await.unwrap();
            for marker in [
                &b"Exif"[..],
                b"GPS",
                b"iPhone",
                b"Apple",
                b"http://ns.adobe.com/xap",
            ] {
                assert!(
                    !got.data.windows(marker.len()).any(|w| w == marker),
                    "{format:?} {size} carries {marker:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn transparency_is_kept_as_png() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(
        &mut client,
        "astronaut",
        corpus_bytes("photos/astronaut_circle.png"),
    )
    .await
    .unwrap();
    let got = get(&mut client, "astronaut", 256, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!(got.content_type, "image/png");
    let decoded = decode(&got);
    assert_eq!(decoded.get_pixel(0, 0)[3], 0, "corner stays transparent");
    assert_eq!(decoded.get_pixel(128, 128)[3], 255, "centre stays opaque");
    let webp = decode(
        &get(&mut client, "astronaut", 256, ImageFormat::Webp)
            .await
            .unwrap(),
    );
    assert_eq!(webp.get_pixel(0, 0)[3], 0, "WebP keeps alpha too");
    // An alpha channel with every pixel opaque is served as JPEG.
    set_inline(&mut client, "logo", corpus_bytes("photos/logo.png"))
        .await
        .unwrap();
    let logo = get(&mut client, "logo", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    assert_eq!(logo.content_type, "image/jpeg");
}

/// An animated GIF of solid frames, one per colour, in order.
fn animated_gif(colours: &[[u8; 3]]) -> Vec<u8> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let frames = colours.iter().map(|&[r, g, b]| {
        let pixels = image::RgbaImage::from_pixel(96, 96, image::Rgba([r, g, b, 255]));
        image::Frame::from_parts(pixels, 0, 0, image::Delay::from_numer_denom_ms(100, 1))
    });
    let mut gif = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut gif);
        encoder.set_repeat(Repeat::Infinite).expect("repeat");
        encoder.encode_frames(frames).expect("encode GIF");
    }
    gif
}

#[tokio::test]
async fn animated_gif_uses_its_first_frame() {
    const RED: [u8; 3] = [255, 0, 0];
    const GREEN: [u8; 3] = [0, 255, 0];
    const BLUE: [u8; 3] = [0, 0, 255];
    let server = Server::start().await;
    let mut client = server.client().await;
    let set = set_inline(&mut client, "gif", animated_gif(&[RED, GREEN, BLUE]))
        .await
        .unwrap();
    assert_eq!(set.status, pb::Status::Ready as i32);
    assert_eq!((set.original_width, set.original_height), (96, 96));
    let got = get(&mut client, "gif", 0, ImageFormat::Unspecified)
        .await
        .unwrap();
    let served = decode(&got).to_rgb8();
    for (x, y, pixel) in served.enumerate_pixels() {
        let off_red = pixel.0.iter().zip(RED).map(|(a, b)| a.abs_diff(b));
        assert!(
            off_red.max().unwrap_or(0) <= 8,
            "pixel ({x}, {y}) is {:?}, not the first frame's red",
            pixel.0
        );
    }
}

/// A PNG whose header declares `width` x `height` and that carries no pixel data.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A GIF whose logical screen and frame claim 65535 x 65535.
fn huge_gif() -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x80, 0, 0]);
    gif.extend_from_slice(&[0; 6]); // two-colour palette
    gif.extend_from_slice(&[0x2c, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]);
    gif.extend_from_slice(&[2, 2, 0x4c, 0x01, 0, 0x3b]);
    gif
}

#[tokio::test]
async fn hostile_files_get_clean_errors_and_the_server_keeps_serving() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let jpeg = corpus_bytes("photos/rocket.jpg");
    let camera = corpus_bytes("camera/Reconyx_HC500_Hyperfire.jpg");
    let random: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated jpeg",
            jpeg[..jpeg.len() / 3].to_vec(),
            "invalid-file-format",
        ),
        (
            "truncated camera jpeg",
            camera[..camera.len() / 2].to_vec(),
            "invalid-file-format",
        ),
        ("zero bytes", Vec::new(), "invalid-file-format"),
        ("random bytes", random, "invalid-file-format"),
        (
            "png 100000x100000",
            png_header(100_000, 100_000),
            "file-too-large",
        ),
        (
            "svg",
            br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>"#.to_vec(),
            "invalid-file-format",
        ),
        (
            "html",
            b"<!DOCTYPE html><html><body>hi</body></html>".to_vec(),
            "invalid-file-format",
        ),
        ("gif with huge frames", huge_gif(), "file-too-large"),
        ("tiff", b"II*\0\x08\0\0\0".to_vec(), "invalid-file-format"),
        (
            "bmp",
            b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0".to_vec(),
            "invalid-file-format",
        ),
    ];
    for (name, bytes, reason) in cases {
        let status = set_inline(&mut client, "victim", bytes.clone())
            .await
            .expect_err(name);
        assert_violation(&status, "image.data", reason);
        let status = upload(&mut client, "victim", &bytes, 4096, None)
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{name} upload: {status:?}"
        );
    }
    assert_no_image(&mut client, "victim").await;
    assert_eq!(health(&server, "").await, 1, "still SERVING");
    set_inline(&mut client, "victim", jpeg)
        .await
        .expect("still processing real images");
}

/// The chunk ids of a RIFF WebP file, in order.
fn webp_chunks(webp: &[u8]) -> Vec<String> {
    assert_eq!(&webp[..4], b"RIFF");
    assert_eq!(&webp[8..12], b"WEBP");
    let mut chunks = Vec::new();
    let mut pos = 12;
    while let Some(header) = webp.get(pos..pos + 8) {
        chunks.push(String::from_utf8_lossy(&header[..4]).into_owned());
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        pos += 8 + len + len % 2;
    }
    chunks
}

#[tokio::test]
async fn webp_renditions_are_lossy_and_smaller_than_jpeg() {
    let server = Server::start().await;
    let mut client = server.client().await;
    set_inline(
        &mut client,
        "camera",
        corpus_bytes("camera/Reconyx_HC500_Hyperfire.jpg"),
    )
    .await
    .unwrap();
    let webp = get(&mut client, "camera", 256, ImageFormat::Webp)
        .await
        .unwrap();
    let jpeg = get(&mut client, "camera", 256, ImageFormat::Jpeg)
        .await
        .unwrap();
    assert_eq!(webp.content_type, "image/webp");
    assert_eq!(webp_chunks(&webp.data), ["VP8 "], "lossy VP8, nothing else");
    assert!(
        webp.data.len() < jpeg.data.len(),
        "256 px WebP {} bytes, JPEG {} bytes",
        webp.data.len(),
        jpeg.data.len()
    );

    set_inline(
        &mut client,
        "astronaut",
        corpus_bytes("photos/astronaut_circle.png"),
    )
    .await
    .unwrap();
    let webp = get(&mut client, "astronaut", 256, ImageFormat::Webp)
        .await
        .unwrap();
    assert_eq!(
        webp_chunks(&webp.data),
        ["VP8X", "ALPH", "VP8 "],
        "lossy VP8 with its alpha plane beside it"
    );
}

/// `image` converted to sRGB from the colour space `icc` describes, with the CMS
/// directly.
fn cms_to_srgb(image: &image::RgbImage, icc: &[u8]) -> image::RgbImage {
    let profile = moxcms::ColorProfile::new_from_slice(icc).expect("profile parses");
    let transform = profile
        .create_transform_8bit(
            moxcms::Layout::Rgb,
            &moxcms::ColorProfile::new_srgb(),
            moxcms::Layout::Rgb,
            moxcms::TransformOptions::default(),
        )
        .expect("transform");
    let mut out = vec![0u8; image.as_raw().len()];
    transform.transform(image.as_raw(), &mut out).expect("cms");
    image::RgbImage::from_raw(image.width(), image.height(), out).expect("image")
}

/// The largest centred square of `image` resized to `edge` with the service's
/// filter (Catmull-Rom), so only colour can tell the two apart.
fn centred_square(image: &image::RgbImage, edge: u32) -> image::DynamicImage {
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let (w, h) = image.dimensions();
    let side = w.min(h);
    let src = ImageRef::new(w, h, image.as_raw(), PixelType::U8x3).expect("view");
    let mut dst = Image::new(edge, edge, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom))
        .crop(
            f64::from((w - side) / 2),
            f64::from((h - side) / 2),
            f64::from(side),
            f64::from(side),
        );
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("resize");
    image::DynamicImage::ImageRgb8(
        image::RgbImage::from_raw(edge, edge, dst.into_vec()).expect("image"),
    )
}

/// Serves `original` (whose pixels are `pixels` in the colour space of `icc`) at
/// 256 px and returns its mean difference from the colour-managed reference and
/// from the reference with the profile thrown away.
async fn served_differences(
    client: &mut Client,
    user: &str,
    original: Vec<u8>,
    pixels: &image::RgbImage,
    icc: &[u8],
) -> (f64, f64) {
    set_inline(client, user, original).await.unwrap();
    let served = decode(&get(client, user, 256, ImageFormat::Png).await.unwrap());
    let managed = centred_square(&cms_to_srgb(pixels, icc), 256);
    let dropped = centred_square(pixels, 256);
    (
        mean_difference(&served, &managed),
        mean_difference(&served, &dropped),
    )
}

#[tokio::test]
async fn adobe_rgb_photo_is_served_in_srgb() {
    let server = Server::start().await;
    let mut client = server.client().await;
    let original = corpus_bytes("photos/rocket.jpg");
    let mut decoder =
        image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&original)).expect("jpeg");
    let icc = image::ImageDecoder::icc_profile(&mut decoder)
        .expect("readable")
        .expect("rocket.jpg embeds Adobe RGB (1998)");
    let pixels = image::DynamicImage::from_decoder(decoder)
        .expect("decodes")
        .to_rgb8();
    let (managed, dropped) =
        served_differences(&mut client, "rocket", original, &pixels, &icc).await;
    assert!(
        managed < 2.5,
        "{managed:.2} from the colour-managed reference"
    );
    assert!(dropped > 4.0, "{dropped:.2} from the profile-dropped one");
}

/// Saturated colours everywhere, so a wide gamut makes a difference.
fn colourful(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let hue = x as f32 / width as f32 * 6.0;
        let level = 1.0 - y as f32 / height as f32 * 0.6;
        let channel = |offset: f32| {
            let d = ((hue - offset).rem_euclid(6.0) - 3.0).abs();
            ((d - 1.0).clamp(0.0, 1.0) * level * 255.0) as u8
        };
        image::Rgb([channel(0.0), channel(2.0), channel(4.0)])
    })
}

#[tokio::test]
async fn display_p3_images_are_served_in_srgb() {
    use image::ImageEncoder;
    let server = Server::start().await;
    let mut client = server.client().await;
    let p3 = moxcms::ColorProfile::new_display_p3()
        .encode()
        .expect("profile");
    let pixels = colourful(600, 400);

    let mut jpeg = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
    encoder.set_icc_profile(p3.clone()).expect("jpeg icc");
    encoder.encode_image(&pixels).expect("jpeg");
    let mut png = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut png);
    encoder.set_icc_profile(p3.clone()).expect("png icc");
    encoder
        .write_image(pixels.as_raw(), 600, 400, image::ExtendedColorType::Rgb8)
        .expect("png");

    for (user, original) in [("p3-jpeg", jpeg), ("p3-png", png)] {
        let (managed, dropped) =
            served_differences(&mut client, user, original, &pixels, &p3).await;
        assert!(
            managed < 2.5,
            "{user}: {managed:.2} from the colour-managed reference"
        );
        assert!(
            dropped > 4.0,
            "{user}: {dropped:.2} from the profile-dropped one"
        );
    }
}
