//! Chart canvas and PNG: the size every chart is drawn at, the RGB buffer
//! plotters draws into, its encoding as a small indexed PNG, and a finished
//! chart (PNG and caption). Pure.

use anyhow::{Context, Result, anyhow};

/// A chart and what it shows, in words.
#[derive(Debug, Clone)]
pub struct Chart {
    pub png: Vec<u8>,
    pub caption: String,
}

/// Pixels across and down.
pub(super) const WIDTH: u32 = 600;
pub(super) const HEIGHT: u32 = 220;

/// What a drawing step fails with (plotters' errors, boxed).
pub(super) type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A picture drawn by `draw` on a blank canvas, as PNG bytes, with what
/// `draw` returns; a drawing error reads "drawing the {what}: ...".
pub(super) fn picture<T>(
    what: &str,
    draw: impl FnOnce(&mut [u8]) -> DrawResult<T>,
) -> Result<(Vec<u8>, T)> {
    let mut rgb = new_canvas();
    let out = draw(&mut rgb).map_err(|e| anyhow!("drawing the {what}: {e}"))?;
    Ok((encode_png(&rgb)?, out))
}

fn new_canvas() -> Vec<u8> {
    vec![255u8; (WIDTH * HEIGHT * 3) as usize]
}

/// Colours in the PNG's palette at most: the charts' flat colours and the
/// grey levels of their text; rarer anti-aliasing shades take the nearest.
const PALETTE: usize = 24;

/// The picture as an indexed PNG: a few KiB instead of the tens an RGB one
/// takes, so a digest with a chart per item stays small.
fn encode_png(rgb: &[u8]) -> Result<Vec<u8>> {
    use std::collections::HashMap;
    // Runs of one colour (most of a chart) are looked up once.
    let (px, _) = rgb.as_chunks::<3>();
    let mut count: HashMap<[u8; 3], u32> = HashMap::new();
    for run in px.chunk_by(|a, b| a == b) {
        *count.entry(run[0]).or_default() += run.len() as u32;
    }
    let mut colours: Vec<([u8; 3], u32)> = count.into_iter().collect();
    colours.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    colours.truncate(PALETTE);
    let palette: Vec<[u8; 3]> = colours.iter().map(|c| c.0).collect();
    let mut index: HashMap<[u8; 3], u8> = palette
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as u8))
        .collect();
    let mut nearest = |c: [u8; 3]| -> u8 {
        *index.entry(c).or_insert_with(|| {
            let dist = |p: &[u8; 3]| -> i32 {
                (0..3)
                    .map(|k| (i32::from(p[k]) - i32::from(c[k])).pow(2))
                    .sum()
            };
            palette
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| dist(p))
                .map_or(0, |(i, _)| i as u8)
        })
    };
    let mut pixels: Vec<u8> = Vec::with_capacity(px.len());
    for run in px.chunk_by(|a, b| a == b) {
        pixels.extend(std::iter::repeat_n(nearest(run[0]), run.len()));
    }
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(palette.concat());
        // High made a monthly chart 4% smaller (5,265 against 5,468
        // bytes) in five times the time of the rest of its encoding.
        enc.set_compression(png::Compression::Balanced);
        let mut w = enc.write_header().context("writing the PNG header")?;
        w.write_image_data(&pixels)
            .context("writing the PNG data")?;
    }
    Ok(png)
}
