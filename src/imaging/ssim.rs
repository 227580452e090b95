//! SSIM as this crate measures it, for choosing WebP qualities (`webp_search.rs`)
//! and for `benches/quality.rs`, so both agree on what "the same SSIM" means.
//!
//! Single-scale SSIM (Wang et al. 2004) on luma (BT.601 weights on 8-bit sRGB
//! values), 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
//! averaged over every window that fits inside the image (no padding).

use image::RgbImage;

const WINDOW: usize = 11;
const SIGMA: f64 = 1.5;
const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

/// SSIM of two RGB images of the same size; `None` when they differ in size
/// or are smaller than the 11 px window.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> Option<f64> {
    if a.dimensions() != b.dimensions() {
        return None;
    }
    let (width, height) = a.dimensions();
    SsimReference::new(a.as_raw(), width, height)?.ssim(b.as_raw())
}

/// One side of the comparison prepared once (its luma, local means and local
/// second moments), for comparing many pictures with the same reference: a
/// comparison then filters three planes instead of five.
pub(crate) struct SsimReference {
    width: usize,
    height: usize,
    window: [f64; WINDOW],
    luma: Vec<f64>,
    mean: Vec<f64>,
    square_mean: Vec<f64>,
}

impl SsimReference {
    /// `rgb` is `width * height` packed 8-bit RGB pixels. `None` if its length
    /// does not match or the image is smaller than the window.
    pub(crate) fn new(rgb: &[u8], width: u32, height: u32) -> Option<Self> {
        let (width, height) = (width as usize, height as usize);
        if width < WINDOW || height < WINDOW || rgb.len() != width * height * 3 {
            return None;
        }
        let window = gaussian_window();
        let luma = luma(rgb);
        let mean = filter_valid(&luma, width, height, &window);
        let square_mean = filter_valid(&product(&luma, &luma), width, height, &window);
        Some(SsimReference {
            width,
            height,
            window,
            luma,
            mean,
            square_mean,
        })
    }

    /// SSIM of `rgb` (packed 8-bit RGB, the reference's size) against the
    /// reference; `None` if its length does not match.
    pub(crate) fn ssim(&self, rgb: &[u8]) -> Option<f64> {
        if rgb.len() != self.width * self.height * 3 {
            return None;
        }
        let (w, h, window) = (self.width, self.height, &self.window);
        let other = luma(rgb);
        let other_mean = filter_valid(&other, w, h, window);
        let other_square_mean = filter_valid(&product(&other, &other), w, h, window);
        let cross_mean = filter_valid(&product(&self.luma, &other), w, h, window);
        let total: f64 = (0..self.mean.len())
            .map(|i| {
                let (mx, my) = (self.mean[i], other_mean[i]);
                let vx = self.square_mean[i] - mx * mx;
                let vy = other_square_mean[i] - my * my;
                let cov = cross_mean[i] - mx * my;
                ((2.0 * mx * my + C1) * (2.0 * cov + C2))
                    / ((mx * mx + my * my + C1) * (vx + vy + C2))
            })
            .sum();
        Some(total / self.mean.len() as f64)
    }
}

fn luma(rgb: &[u8]) -> Vec<f64> {
    rgb.chunks_exact(3)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect()
}

fn product(p: &[f64], q: &[f64]) -> Vec<f64> {
    p.iter().zip(q).map(|(p, q)| p * q).collect()
}

fn gaussian_window() -> [f64; WINDOW] {
    let mut weights = [0.0; WINDOW];
    for (i, w) in weights.iter_mut().enumerate() {
        let d = i as f64 - (WINDOW / 2) as f64;
        *w = (-d * d / (2.0 * SIGMA * SIGMA)).exp();
    }
    let sum: f64 = weights.iter().sum();
    weights.map(|w| w / sum)
}

/// Separable Gaussian filter keeping only the positions where the whole
/// window fits: `(w - 10) x (h - 10)` values. Each output sums its 11 terms
/// in window order, so results do not depend on how the loops are laid out.
fn filter_valid(values: &[f64], w: usize, h: usize, window: &[f64; WINDOW]) -> Vec<f64> {
    let (ow, oh) = (w - WINDOW + 1, h - WINDOW + 1);
    let mut rows = vec![0.0; ow * h];
    for (row, out) in values.chunks_exact(w).zip(rows.chunks_exact_mut(ow)) {
        for (x, value) in out.iter_mut().enumerate() {
            *value = window
                .iter()
                .zip(&row[x..x + WINDOW])
                .fold(0.0, |sum, (k, v)| sum + k * v);
        }
    }
    let mut out = vec![0.0; ow * oh];
    for (y, out_row) in out.chunks_exact_mut(ow).enumerate() {
        for (k, weight) in window.iter().enumerate() {
            let row = &rows[(y + k) * ow..(y + k + 1) * ow];
            for (value, r) in out_row.iter_mut().zip(row) {
                *value += weight * r;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(width: u32, height: u32, amplitude: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            let noise = (x * 7919 + y * 104_729) % (2 * amplitude + 1);
            let v = (x * 3 + y * 2 + noise) as u8;
            image::Rgb([v, v / 2, 255 - v])
        })
    }

    #[test]
    fn identical_images_score_one() {
        let image = noisy(40, 30, 20);
        let score = ssim(&image, &image).expect("ssim");
        assert!((score - 1.0).abs() < 1e-12, "{score}");
    }

    #[test]
    fn more_distortion_scores_lower() {
        let reference = noisy(40, 30, 0);
        let slight = ssim(&reference, &noisy(40, 30, 3)).expect("ssim");
        let heavy = ssim(&reference, &noisy(40, 30, 30)).expect("ssim");
        assert!(1.0 > slight && slight > heavy, "{slight} {heavy}");
    }

    #[test]
    fn images_smaller_than_the_window_or_of_other_sizes_have_none() {
        assert_eq!(ssim(&noisy(10, 40, 5), &noisy(10, 40, 5)), None);
        assert_eq!(ssim(&noisy(40, 30, 5), &noisy(30, 40, 5)), None);
    }
}
