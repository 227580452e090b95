//! Bytes per picture: for corpus photos and the 64/128/256/512 px renditions,
//! the bytes and SSIM of our JPEG and WebP next to libvips' JPEG q80 and WebP
//! q80 (`vipsthumbnail`, same run), and their ratios.
//!
//! Run with `cargo bench --bench quality` (vipsthumbnail from
//! `scripts/install-deps --bench`; without it the libvips columns are empty).
//! Environment:
//! - `QUALITY_BENCH_FILES`: comma-separated corpus paths (default: the photos below)
//! - `QUALITY_BENCH_SIZES`: comma-separated edges (default 64,128,256,512)
//! - `QUALITY_BENCH_TIMES=N`: instead of bytes and SSIM, time WebP renditions
//!   as Get makes them, one edge at a time, the per-picture search against the
//!   size classes' qualities (N interleaved runs each)
//! - `QUALITY_BENCH_JPEG_Q`, `QUALITY_BENCH_WEBP_Q`: comma-separated qualities to
//!   sweep instead of the service's own (`QUALITY_BENCH_WEBP_Q` applies one
//!   quality to every size); prints one summary line per pair.
//! - `QUALITY_BENCH_WEBP_TOLERANCE`: comma-separated SSIM tolerances for the
//!   per-picture WebP search to sweep (`WebpSearch::tolerance`)
//! - `QUALITY_BENCH_PROXY_CSV=file`: instead of the table, append per photo, edge
//!   and WebP quality (`QUALITY_BENCH_WEBP_Q`, default 56-96) the bytes and SSIM
//!   of our JPEG and WebP against the reference and against the rendition's
//!   pixels (what the per-picture search sees), for tuning the search offline
//! - `QUALITY_BENCH_WEBP_BY_SIZE=1`: WebP at the size classes' qualities
//!   (`webp_quality`, the rule before the per-picture search), as a sweep point
//! - `QUALITY_BENCH_ROWS_CSV`: a file to append every row of a sweep to (label
//!   from `QUALITY_BENCH_LABEL`, then JPEG q, the WebP choice (`q78`, `search
//!   0.003`), file, edge, and bytes and
//!   SSIM of our JPEG, our WebP from pixels, libvips' JPEG and libvips' WebP),
//!   for choosing qualities per size or per row.
//!
//! The bars are per row: our JPEG no more bytes than libvips' JPEG at an SSIM
//! no more than 0.002 below it; our WebP at most 0.75 of our JPEG's bytes at an
//! SSIM no more than 0.005 below it. Each summary line counts the rows that
//! miss them.
//!
//! libvips gets the same upright centred square we crop (`vips autorot` and
//! `extract_area` into a lossless `.v` file), then `vipsthumbnail --size NxN`
//! resizes it (Lanczos3) and saves it at q80 with `strip`.
//!
//! SSIM (`imaging::ssim`, the one the service's WebP search uses): the standard single-scale SSIM (Wang et al. 2004) on luma (BT.601 weights
//! on 8-bit sRGB values), 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
//! averaged over every window that fits inside the image (no padding). Every
//! output is compared with the same reference: the original decoded by `image`,
//! turned upright, converted to sRGB from its embedded ICC profile with moxcms,
//! its largest centred square resized with fast_image_resize's Lanczos3.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use moxcms::{ColorProfile, Layout, TransformOptions};
use profile_image::imaging::{
    ImageFormat, Limits, QualityChoice, RenditionSpec, WebpSearch, process, process_as, ssim,
    transcode, transcode_at, webp_quality,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_FILES: &[&str] = &[
    "camera/olympus_12mp.jpg",
    "camera/iphone_hdr_NO.jpg",
    "camera/Reconyx_HC500_Hyperfire.jpg",
    "camera/45-gps_ifd.jpg",
    "photos/chelsea.png",
    "photos/coffee.png",
    "photos/astronaut.png",
    "photos/rocket.jpg",
    "photos/hubble_deep_field.jpg",
];
const VIPS_QUALITY: u8 = 80;
/// The bars (issue 15), per row.
const JPEG_SSIM_TOLERANCE: f64 = 0.002;
const WEBP_SSIM_TOLERANCE: f64 = 0.005;
const WEBP_MAX_BYTES_OF_JPEG: f64 = 0.75;

fn corpus(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(relative)
}

fn list_env<T: std::str::FromStr>(name: &str) -> Option<Vec<T>> {
    let value = std::env::var(name).ok()?;
    let items: Vec<T> = value
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    (!items.is_empty()).then_some(items)
}

/// The original as a viewer shows it: upright, in sRGB.
fn decode_reference_source(bytes: &[u8]) -> RgbImage {
    let mut decoder = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .expect("format")
        .into_decoder()
        .expect("decoder");
    let orientation = decoder.orientation().expect("orientation");
    let icc = decoder.icc_profile().ok().flatten();
    let mut image = DynamicImage::from_decoder(decoder).expect("decode");
    image.apply_orientation(orientation);
    let mut rgb = image.to_rgb8();
    if let Some(profile) = icc.and_then(|icc| ColorProfile::new_from_slice(&icc).ok()) {
        let transform = profile
            .create_transform_8bit(
                Layout::Rgb,
                &ColorProfile::new_srgb(),
                Layout::Rgb,
                TransformOptions::default(),
            )
            .expect("transform");
        let mut out = vec![0u8; rgb.as_raw().len()];
        transform.transform(rgb.as_raw(), &mut out).expect("cms");
        rgb = RgbImage::from_raw(rgb.width(), rgb.height(), out).expect("image");
    }
    rgb
}

/// The largest centred square of `source` (as the service crops by default),
/// resized to `edge` with Lanczos3.
fn reference(source: &RgbImage, edge: u32) -> RgbImage {
    let (w, h) = source.dimensions();
    let side = w.min(h);
    let src = ImageRef::new(w, h, source.as_raw(), PixelType::U8x3).expect("view");
    let mut dst = Image::new(edge, edge, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .crop(
            f64::from((w - side) / 2),
            f64::from((h - side) / 2),
            f64::from(side),
            f64::from(side),
        );
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("resize");
    RgbImage::from_raw(edge, edge, dst.into_vec()).expect("image")
}

/// Bytes and SSIM of one encoded picture.
#[derive(Clone, Copy, Default)]
struct Scored {
    bytes: usize,
    ssim: f64,
}

fn score(encoded: &[u8], reference: &RgbImage) -> Scored {
    let decoded = image::load_from_memory(encoded)
        .expect("output decodes")
        .to_rgb8();
    Scored {
        bytes: encoded.len(),
        ssim: ssim(&decoded, reference).expect("same size, at least 11 px"),
    }
}

fn vipsthumbnail_available() -> bool {
    Command::new("vipsthumbnail")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The upright, largest centred square of `file` as a lossless libvips
/// image (`.v`, which keeps the ICC profile), so libvips resizes exactly the
/// pixels we do: its own `--smartcrop centre` crops after resizing, off by a
/// fraction of a pixel, which alone costs up to 0.15 SSIM on detailed photos.
fn vips_square(file: &Path, upright: (u32, u32), dir: &Path) -> Option<PathBuf> {
    let (w, h) = upright;
    let side = w.min(h);
    let rotated = dir.join("upright.v");
    let square = dir.join("square.v");
    let run = |args: &[&str]| {
        Command::new("vips")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = run(&[
        "autorot",
        &file.to_string_lossy(),
        &rotated.to_string_lossy(),
    ]) && run(&[
        "extract_area",
        &rotated.to_string_lossy(),
        &square.to_string_lossy(),
        &((w - side) / 2).to_string(),
        &((h - side) / 2).to_string(),
        &side.to_string(),
        &side.to_string(),
    ]);
    ok.then_some(square)
}

/// libvips' thumbnail of `square` at `edge`, as `extension` at q80 without
/// metadata (converted to sRGB from an embedded profile, as vipsthumbnail
/// does by default).
fn vips(square: &Path, edge: u32, extension: &str, dir: &Path) -> Option<Vec<u8>> {
    let out = dir.join(format!("vips_{edge}.{extension}"));
    let ok = Command::new("vipsthumbnail")
        .arg(square)
        .args(["--size", &format!("{edge}x{edge}"), "-o"])
        .arg(format!("{}[Q={VIPS_QUALITY},strip]", out.display()))
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| std::fs::read(&out).ok()).flatten()
}

/// Bytes of a WebP file without its metadata chunks. libvips 8.14.1's
/// webpsave keeps EXIF despite `strip` (9 KB on the Olympus photo, more than
/// the 64 px picture itself); we count what a stripped file would hold:
/// RIFF header, image chunks, and VP8X only when alpha needs it.
fn webp_bytes_without_metadata(webp: &[u8]) -> usize {
    let mut total = 12;
    let mut has_alpha = false;
    let mut vp8x = 0;
    let mut pos = 12;
    while let Some(header) = webp.get(pos..pos + 8) {
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let size = 8 + len + len % 2;
        match &header[..4] {
            b"EXIF" | b"XMP " | b"ICCP" => {}
            b"VP8X" => vp8x = size,
            id => {
                has_alpha |= id == b"ALPH";
                total += size;
            }
        }
        pos += size;
    }
    total + if has_alpha { vp8x } else { 0 }
}

/// One photo at one edge: ours and libvips', scored against the reference.
struct Row {
    file: String,
    edge: u32,
    jpeg: Scored,
    webp: Scored,
    /// WebP encoded from the pixels rather than from our JPEG.
    direct_webp: Scored,
    vips_jpeg: Option<Scored>,
    vips_webp: Option<Scored>,
}

/// Our renditions of `bytes` at one edge.
struct Ours {
    edge: u32,
    jpeg: Vec<u8>,
    /// WebP transcoded from the JPEG rendition (how Get made WebP before
    /// commit 0d3d865).
    webp: Vec<u8>,
    /// WebP made from the pixels, as Get makes it (`imaging::render`).
    direct_webp: Vec<u8>,
}

/// `webp`: how WebP qualities are chosen (the service's search, a search set
/// otherwise, the size classes' qualities, or one quality for every size).
fn ours(bytes: &[u8], edges: &[u32], jpeg_quality: u8, webp: QualityChoice) -> Vec<Ours> {
    let spec = RenditionSpec {
        sizes: edges.to_vec(),
        full_max_edge: edges.iter().copied().max().unwrap_or(512),
        jpeg_quality,
    };
    let limits = Limits::default();
    let jpegs = process(bytes, None, &limits, &spec).expect("process");
    let webps =
        process_as(bytes, None, &limits, &spec, ImageFormat::Webp, webp).expect("process as WebP");
    jpegs
        .renditions
        .iter()
        .zip(&webps.renditions)
        .map(|(jpeg, direct)| {
            assert_eq!(jpeg.format, ImageFormat::Jpeg, "opaque photos only");
            Ours {
                edge: jpeg.edge,
                jpeg: jpeg.bytes.clone(),
                webp: match webp {
                    QualityChoice::Fixed(q) => transcode_at(&jpeg.bytes, ImageFormat::Webp, q),
                    _ => transcode(&jpeg.bytes, ImageFormat::Webp, jpeg_quality),
                }
                .expect("webp"),
                direct_webp: direct.bytes.clone(),
            }
        })
        .collect()
}

fn measure(
    files: &[String],
    edges: &[u32],
    jpeg_quality: u8,
    webp: QualityChoice,
    with_vips: bool,
) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    for file in files {
        let path = corpus(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let source = decode_reference_source(&bytes);
        let square = with_vips
            .then(|| vips_square(&path, source.dimensions(), dir.path()))
            .flatten();
        for out in ours(&bytes, edges, jpeg_quality, webp) {
            let edge = out.edge;
            let reference = reference(&source, edge);
            let vips_scored = |ext: &str| {
                let out = vips(square.as_deref()?, edge, ext, dir.path())?;
                let mut scored = score(&out, &reference);
                if ext == "webp" {
                    scored.bytes = webp_bytes_without_metadata(&out);
                }
                Some(scored)
            };
            rows.push(Row {
                file: file.clone(),
                edge,
                jpeg: score(&out.jpeg, &reference),
                webp: score(&out.webp, &reference),
                direct_webp: score(&out.direct_webp, &reference),
                vips_jpeg: vips_scored("jpg"),
                vips_webp: vips_scored("webp"),
            });
        }
    }
    rows
}

fn ratio(a: usize, b: usize) -> f64 {
    a as f64 / b as f64
}

fn print_rows(rows: &[Row]) {
    println!(
        "| file | px | our JPEG B | SSIM | our WebP B | SSIM | WebP from pixels B | SSIM | vips JPEG B | SSIM | vips WebP B | SSIM | WebP/JPEG | JPEG/vips JPEG | WebP/vips WebP |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let cell = |s: Option<Scored>| match s {
        Some(s) => format!("{} | {:.4}", s.bytes, s.ssim),
        None => "- | -".to_owned(),
    };
    let ratio_cell = |a: usize, b: Option<Scored>| match b {
        Some(b) => format!("{:.2}", ratio(a, b.bytes)),
        None => "-".to_owned(),
    };
    for r in rows {
        println!(
            "| {} | {} | {} | {:.4} | {} | {:.4} | {} | {:.4} | {} | {} | {:.2} | {} | {} |",
            short_name(&r.file),
            r.edge,
            r.jpeg.bytes,
            r.jpeg.ssim,
            r.webp.bytes,
            r.webp.ssim,
            r.direct_webp.bytes,
            r.direct_webp.ssim,
            cell(r.vips_jpeg),
            cell(r.vips_webp),
            ratio(r.webp.bytes, r.jpeg.bytes),
            ratio_cell(r.jpeg.bytes, r.vips_jpeg),
            ratio_cell(r.webp.bytes, r.vips_webp),
        );
    }
}

/// Totals over all rows: summed bytes and mean SSIM per column, the ratios of
/// the sums, and the worst (lowest) per-row SSIM difference.
fn summary(label: &str, rows: &[Row]) {
    let sum = |f: &dyn Fn(&Row) -> Option<Scored>| -> Option<(usize, f64)> {
        let scored: Option<Vec<Scored>> = rows.iter().map(f).collect();
        scored.map(|s| {
            (
                s.iter().map(|s| s.bytes).sum(),
                s.iter().map(|s| s.ssim).sum::<f64>() / s.len() as f64,
            )
        })
    };
    let jpeg = sum(&|r| Some(r.jpeg)).unwrap_or_default();
    let webp = sum(&|r| Some(r.webp)).unwrap_or_default();
    let direct = sum(&|r| Some(r.direct_webp)).unwrap_or_default();
    let min_diff =
        |f: &dyn Fn(&Row) -> Option<f64>| rows.iter().filter_map(f).fold(f64::INFINITY, f64::min);
    print!(
        "{label}: our JPEG {} B SSIM {:.4}; our WebP {} B SSIM {:.4}; WebP/JPEG bytes {:.3}, worst row SSIM WebP-JPEG {:+.4}; WebP from pixels {} B SSIM {:.4}, /JPEG {:.3}, worst row {:+.4}",
        jpeg.0,
        jpeg.1,
        webp.0,
        webp.1,
        ratio(webp.0, jpeg.0),
        min_diff(&|r| Some(r.webp.ssim - r.jpeg.ssim)),
        direct.0,
        direct.1,
        ratio(direct.0, jpeg.0),
        min_diff(&|r| Some(r.direct_webp.ssim - r.jpeg.ssim)),
    );
    if let (Some(vj), Some(vw)) = (sum(&|r| r.vips_jpeg), sum(&|r| r.vips_webp)) {
        print!(
            "; vips JPEG {} B SSIM {:.4}, vips WebP {} B SSIM {:.4}; JPEG/vips {:.3} (worst row SSIM {:+.4}); WebP/vips WebP {:.3}; WebP/vips JPEG {:.3}",
            vj.0,
            vj.1,
            vw.0,
            vw.1,
            ratio(jpeg.0, vj.0),
            min_diff(&|r| r.vips_jpeg.map(|v| r.jpeg.ssim - v.ssim)),
            ratio(webp.0, vw.0),
            ratio(webp.0, vj.0),
        );
    }
    println!();
    bars(rows);
}

/// The per-row bars: how many rows miss each, and the worst rows.
fn bars(rows: &[Row]) {
    let worst = |key: &dyn Fn(&Row) -> Option<f64>, highest: bool, decimals: usize| {
        rows.iter()
            .filter_map(|r| key(r).map(|v| (v, r)))
            .reduce(|a, b| if (b.0 > a.0) == highest { b } else { a })
            .map(|(v, r)| format!("{v:.decimals$} ({} {})", short_name(&r.file), r.edge))
            .unwrap_or_else(|| "-".to_owned())
    };
    let webp_bytes = |r: &Row| Some(ratio(r.direct_webp.bytes, r.jpeg.bytes));
    let webp_ssim = |r: &Row| Some(r.direct_webp.ssim - r.jpeg.ssim);
    let missed_webp = rows
        .iter()
        .filter(|r| {
            ratio(r.direct_webp.bytes, r.jpeg.bytes) > WEBP_MAX_BYTES_OF_JPEG
                || r.direct_webp.ssim - r.jpeg.ssim < -WEBP_SSIM_TOLERANCE
        })
        .count();
    print!(
        "  bars, {} rows: WebP from pixels misses on {missed_webp} (worst bytes/JPEG {}, worst SSIM {})",
        rows.len(),
        worst(&webp_bytes, true, 3),
        worst(&webp_ssim, false, 4),
    );
    if rows.iter().all(|r| r.vips_jpeg.is_some()) {
        let jpeg_bytes = |r: &Row| r.vips_jpeg.map(|v| ratio(r.jpeg.bytes, v.bytes));
        let jpeg_ssim = |r: &Row| r.vips_jpeg.map(|v| r.jpeg.ssim - v.ssim);
        let missed_jpeg = rows
            .iter()
            .filter(|r| {
                r.vips_jpeg.is_some_and(|v| {
                    r.jpeg.bytes > v.bytes || r.jpeg.ssim - v.ssim < -JPEG_SSIM_TOLERANCE
                })
            })
            .count();
        print!(
            "; JPEG misses on {missed_jpeg} (worst bytes/libvips {}, worst SSIM {})",
            worst(&jpeg_bytes, true, 3),
            worst(&jpeg_ssim, false, 4),
        );
    }
    println!();
}

fn short_name(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

fn choice_label(choice: QualityChoice) -> String {
    match choice {
        QualityChoice::Service => format!("search {}", WebpSearch::default().tolerance),
        QualityChoice::WebpSearch(search) => format!("search {}", search.tolerance),
        QualityChoice::BySize => "by size".to_owned(),
        QualityChoice::Fixed(q) => format!("q{q}"),
    }
}

/// Times WebP renditions as Get makes them (`process_as` for one edge from
/// the original, like `imaging::render`), the per-picture search against the
/// size classes' qualities, `runs` interleaved runs each after one warm-up;
/// prints the median and the fastest run in ms.
fn time_webp(files: &[String], edges: &[u32], runs: usize) {
    let limits = Limits::default();
    let choices = [QualityChoice::BySize, QualityChoice::Service];
    println!("| file | px | by size median / min ms | search median / min ms |");
    println!("|---|---:|---:|---:|");
    for file in files {
        let bytes = std::fs::read(corpus(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for &edge in edges {
            let spec = RenditionSpec {
                sizes: vec![edge],
                full_max_edge: edge,
                ..RenditionSpec::default()
            };
            let mut times = [Vec::new(), Vec::new()];
            for run in 0..=runs {
                for (choice, times) in choices.iter().zip(&mut times) {
                    let start = Instant::now();
                    process_as(&bytes, None, &limits, &spec, ImageFormat::Webp, *choice)
                        .expect("process as WebP");
                    if run > 0 {
                        times.push(start.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
            let cells = times.map(|mut t| {
                t.sort_by(f64::total_cmp);
                format!("{:.1} / {:.1}", t[t.len() / 2], t[0])
            });
            println!(
                "| {} | {edge} | {} | {} |",
                short_name(file),
                cells[0],
                cells[1]
            );
        }
    }
}

/// For tuning the WebP search offline: per photo, edge and WebP quality, the
/// bytes and SSIM of our JPEG and of WebP, each against the bench's reference
/// and against the rendition's own pixels (what the search sees), appended to
/// `path` as CSV: file, edge, WebP q, JPEG bytes, JPEG SSIM (reference),
/// JPEG SSIM (pixels), WebP bytes, WebP SSIM (reference), WebP SSIM (pixels).
/// The pixels come from a PNG rendition (lossless), encoded as the service
/// encodes the raster.
fn proxy_table(path: &str, files: &[String], edges: &[u32], webp_qualities: &[u8]) {
    use std::io::Write;
    let spec = RenditionSpec {
        sizes: edges.to_vec(),
        full_max_edge: edges.iter().copied().max().unwrap_or(512),
        ..RenditionSpec::default()
    };
    let mut out = String::new();
    for file in files {
        let bytes = std::fs::read(corpus(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let source = decode_reference_source(&bytes);
        let pngs = process_as(
            &bytes,
            None,
            &Limits::default(),
            &spec,
            ImageFormat::Png,
            QualityChoice::Service,
        )
        .expect("process as PNG");
        for png in &pngs.renditions {
            let reference = reference(&source, png.edge);
            let pixels = image::load_from_memory(&png.bytes).expect("png").to_rgb8();
            let scores = |encoded: &[u8]| {
                let decoded = image::load_from_memory(encoded).expect("decodes").to_rgb8();
                let against = |r: &RgbImage| ssim(&decoded, r).expect("same size");
                (encoded.len(), against(&reference), against(&pixels))
            };
            let jpeg =
                transcode_at(&png.bytes, ImageFormat::Jpeg, spec.jpeg_quality).expect("jpeg");
            let (jpeg_bytes, jpeg_ref, jpeg_pixels) = scores(&jpeg);
            for &q in webp_qualities {
                let webp = transcode_at(&png.bytes, ImageFormat::Webp, q).expect("webp");
                let (webp_bytes, webp_ref, webp_pixels) = scores(&webp);
                out += &format!(
                    "{file},{},{q},{jpeg_bytes},{jpeg_ref:.6},{jpeg_pixels:.6},{webp_bytes},{webp_ref:.6},{webp_pixels:.6}\n",
                    png.edge
                );
            }
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(out.as_bytes()))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// One line per row of a sweep, appended to `QUALITY_BENCH_ROWS_CSV`.
fn append_csv(path: &str, rows: &[Row], jpeg_quality: u8, webp: &str) {
    use std::io::Write;
    let label = std::env::var("QUALITY_BENCH_LABEL").unwrap_or_default();
    let mut out = String::new();
    for r in rows {
        let [vips_jpeg, vips_webp] =
            [r.vips_jpeg, r.vips_webp].map(|s| s.map_or((0, 0.0), |s| (s.bytes, s.ssim)));
        out += &format!(
            "{label},{jpeg_quality},{webp},{},{},{},{:.6},{},{:.6},{},{:.6},{},{:.6}\n",
            r.file,
            r.edge,
            r.jpeg.bytes,
            r.jpeg.ssim,
            r.direct_webp.bytes,
            r.direct_webp.ssim,
            vips_jpeg.0,
            vips_jpeg.1,
            vips_webp.0,
            vips_webp.1,
        );
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(out.as_bytes()))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
}

fn main() {
    let files: Vec<String> = list_env("QUALITY_BENCH_FILES")
        .unwrap_or_else(|| DEFAULT_FILES.iter().map(|f| f.to_string()).collect());
    let edges: Vec<u32> =
        list_env("QUALITY_BENCH_SIZES").unwrap_or_else(|| vec![64, 128, 256, 512]);
    let with_vips = vipsthumbnail_available();
    if !with_vips {
        println!("vipsthumbnail not found (scripts/install-deps --bench): libvips columns empty");
    }
    let service_jpeg = RenditionSpec::default().jpeg_quality;
    let sweep_jpeg = list_env::<u8>("QUALITY_BENCH_JPEG_Q");
    let sweep_webp = list_env::<u8>("QUALITY_BENCH_WEBP_Q");
    let sweep_tolerance = list_env::<f64>("QUALITY_BENCH_WEBP_TOLERANCE");
    if let Ok(path) = std::env::var("QUALITY_BENCH_PROXY_CSV") {
        let qualities = sweep_webp.unwrap_or_else(|| (56..=96).collect());
        proxy_table(&path, &files, &edges, &qualities);
        return;
    }
    if let Some(runs) = list_env::<usize>("QUALITY_BENCH_TIMES") {
        time_webp(&files, &edges, runs[0]);
        return;
    }
    let by_size = std::env::var_os("QUALITY_BENCH_WEBP_BY_SIZE").is_some();
    if sweep_jpeg.is_some() || sweep_webp.is_some() || sweep_tolerance.is_some() || by_size {
        // libvips does not change between sweep points: measured once.
        let mut vips_rows: Option<Vec<Row>> = None;
        let webp_choices: Vec<QualityChoice> = match (&sweep_webp, &sweep_tolerance) {
            (Some(qualities), _) => qualities
                .iter()
                .copied()
                .map(QualityChoice::Fixed)
                .collect(),
            (None, Some(tolerances)) => tolerances
                .iter()
                .map(|&tolerance| {
                    QualityChoice::WebpSearch(WebpSearch {
                        tolerance,
                        ..WebpSearch::default()
                    })
                })
                .collect(),
            (None, None) if by_size => vec![QualityChoice::BySize],
            (None, None) => vec![QualityChoice::Service],
        };
        for &jq in sweep_jpeg.as_deref().unwrap_or(&[service_jpeg]) {
            for &wq in &webp_choices {
                let mut rows = measure(&files, &edges, jq, wq, with_vips && vips_rows.is_none());
                match &vips_rows {
                    None => {
                        vips_rows = Some(
                            rows.iter()
                                .map(|r| Row {
                                    file: r.file.clone(),
                                    ..*r
                                })
                                .collect(),
                        )
                    }
                    Some(v) => {
                        for (row, vips) in rows.iter_mut().zip(v) {
                            row.vips_jpeg = vips.vips_jpeg;
                            row.vips_webp = vips.vips_webp;
                        }
                    }
                }
                let webp_label = choice_label(wq);
                summary(&format!("JPEG q{jq}, WebP {webp_label}"), &rows);
                if let Ok(path) = std::env::var("QUALITY_BENCH_ROWS_CSV") {
                    append_csv(&path, &rows, jq, &webp_label);
                }
            }
        }
        return;
    }
    let by_size: Vec<String> = edges
        .iter()
        .map(|&e| format!("{e}: q{}", webp_quality(e)))
        .collect();
    println!(
        "files {files:?}, edges {edges:?}; our JPEG q{service_jpeg}, our WebP searched per picture ({:?}, first probe by size: {}); libvips {}",
        WebpSearch::default(),
        by_size.join(", "),
        if with_vips {
            "JPEG q80 and WebP q80"
        } else {
            "absent"
        }
    );
    let rows = measure(
        &files,
        &edges,
        service_jpeg,
        QualityChoice::Service,
        with_vips,
    );
    print_rows(&rows);
    summary("all rows", &rows);
    for &edge in &edges {
        let at: Vec<Row> = rows
            .iter()
            .filter(|r| r.edge == edge)
            .map(|r| Row {
                file: r.file.clone(),
                ..*r
            })
            .collect();
        summary(&format!("{edge} px"), &at);
    }
}
