//! The PNG chart: one horizontal bar of msg/s per scenario, labelled with its value and ratio to the
//! ceiling, coloured by kind.
//!
//! [`layout_chart`] places everything in pixels without touching a font, so it is tested on any
//! machine; [`plot_png`] draws that layout with plotters' bitmap backend and the ab_glyph text renderer,
//! which needs a TrueType file at run time (Debian's fonts-dejavu-core, installed by `./x deps`).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{Figure, format_rate};

/// The font the chart is drawn with.
pub(crate) const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The Debian package that ships [`FONT_PATH`].
pub(crate) const FONT_PACKAGE: &str = "fonts-dejavu-core";
/// The family name the font is registered under with plotters.
const FONT_FAMILY: &str = "penguin-bench-sans";

/// Image width, px.
const WIDTH: u32 = 1200;
/// Space around the content, px.
const MARGIN: i32 = 24;
/// Height of one scenario: its name above its bar, px.
const ROW_HEIGHT: i32 = 58;
/// Offset of a bar below its row's top (room for the name), px.
const BAR_OFFSET: i32 = 22;
/// Bar thickness, px.
const BAR_HEIGHT: i32 = 22;
/// Room right of the longest bar for its value label, px.
const VALUE_ROOM: i32 = 250;
/// Text sizes, px.
pub(crate) const TITLE_SIZE: f64 = 22.0;
pub(crate) const TEXT_SIZE: f64 = 15.0;
pub(crate) const SMALL_SIZE: f64 = 13.0;
/// A generous estimate of DejaVu Sans's mean advance, in em, to keep names inside the image.
const EM_PER_CHAR: f64 = 0.62;

/// An RGB colour.
pub(crate) type Rgb = (u8, u8, u8);

/// Where everything goes, in pixels of a `width` × `height` image (origin top left).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ChartLayout {
    pub width: u32,
    pub height: u32,
    pub title: String,
    pub title_at: (i32, i32),
    pub legend: Vec<LegendEntry>,
    /// The area of bars and grid lines: (left, top), (right, bottom).
    pub plot: ((i32, i32), (i32, i32)),
    pub bars: Vec<BarLayout>,
    /// Grid lines with their value labels below the plot, left to right.
    pub ticks: Vec<Tick>,
    pub axis_caption: String,
    pub axis_caption_at: (i32, i32),
}

/// One scenario: its name above its bar, its value label right of the bar.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BarLayout {
    pub name: String,
    pub name_at: (i32, i32),
    pub top_left: (i32, i32),
    pub bottom_right: (i32, i32),
    pub value_label: String,
    pub value_at: (i32, i32),
    pub colour: Rgb,
}

/// A vertical grid line at `x` for `value` msg/s.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Tick {
    pub x: i32,
    pub value: f64,
    pub label: String,
    pub label_at: (i32, i32),
}

/// A colour swatch and the kind it stands for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LegendEntry {
    pub label: String,
    pub swatch_top_left: (i32, i32),
    pub label_at: (i32, i32),
    pub colour: Rgb,
}

/// The colour of a figure's kind ("ceiling", "postfix", "penguin", the DKIM-signing penguin kinds in
/// lighter blues, the shaping and reception-only penguin kinds in greens; anything else gets one more).
pub(crate) fn colour_of(kind: &str) -> Rgb {
    match kind.to_ascii_lowercase().as_str() {
        "ceiling" => (150, 150, 150),
        "postfix" => (222, 125, 44),
        "penguin" => (46, 110, 186),
        "penguin-dkim-rsa" => (96, 158, 222),
        "penguin-dkim-ed25519" => (150, 196, 240),
        "penguin-shaping" => (38, 150, 130),
        "penguin-reception" => (120, 190, 90),
        _ => (128, 88, 168),
    }
}

/// The legend's words for a kind.
fn kind_label(kind: &str) -> String {
    match kind.to_ascii_lowercase().as_str() {
        "ceiling" => "loopback ceiling".to_owned(),
        "postfix" => "Postfix".to_owned(),
        "penguin" => "penguin-mta".to_owned(),
        "penguin-dkim-rsa" => "penguin-mta + DKIM RSA-2048".to_owned(),
        "penguin-dkim-ed25519" => "penguin-mta + DKIM Ed25519".to_owned(),
        "penguin-shaping" => "penguin-mta, shaping configured".to_owned(),
        "penguin-reception" => "penguin-mta reception only".to_owned(),
        _ => kind.to_owned(),
    }
}

/// Height of one row of the legend, px.
const LEGEND_ROW: i32 = 20;

/// Estimated width of `text` at `size` px (an over-estimate, for keeping text inside the image).
fn text_width(text: &str, size: f64) -> i32 {
    (text.chars().count() as f64 * size * EM_PER_CHAR).ceil() as i32
}

/// `text` cut with "…" to at most `max_width` px (estimated) at `size`.
fn fit(text: &str, size: f64, max_width: i32) -> String {
    if text_width(text, size) <= max_width {
        return text.to_owned();
    }
    let keep = ((max_width as f64 / (size * EM_PER_CHAR)) as usize).saturating_sub(1);
    let mut cut: String = text.chars().take(keep).collect();
    cut.push('…');
    cut
}

/// A round grid step (1, 2, 2.5 or 5 × 10ⁿ) giving at most about `target` steps up to `max`.
fn nice_step(max: f64, target: usize) -> f64 {
    let raw = max / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|factor| factor * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A grid value as text: "0", "500", "2.5k", "30k".
fn tick_label(value: f64) -> String {
    if value >= 1000.0 {
        let thousands = format!("{:.1}", value / 1000.0);
        format!("{}k", thousands.trim_end_matches(".0"))
    } else {
        format!("{}", value.round() as i64)
    }
}

/// Places the title, legend, one bar per figure (in the given order), grid and axis caption.
pub(crate) fn layout_chart(figures: &[Figure], title: &str) -> ChartLayout {
    let width = WIDTH as i32;
    let text_room = width - 2 * MARGIN;
    let title_at = (MARGIN, 16);

    // Legend: the kinds present, in order of first appearance.
    let mut kinds: Vec<&str> = Vec::new();
    for figure in figures {
        if !kinds.iter().any(|kind| kind.eq_ignore_ascii_case(&figure.kind)) {
            kinds.push(&figure.kind);
        }
    }
    // One row of swatches, wrapped onto further rows when it would leave the image.
    let mut legend_y = 52;
    let mut x = MARGIN;
    let legend = kinds
        .iter()
        .map(|kind| {
            let label = kind_label(kind);
            let entry_width = 20 + text_width(&label, SMALL_SIZE) + 12;
            if x > MARGIN && x + entry_width - 12 > width - MARGIN {
                x = MARGIN;
                legend_y += LEGEND_ROW;
            }
            let entry = LegendEntry {
                swatch_top_left: (x, legend_y),
                label_at: (x + 20, legend_y + 1),
                colour: colour_of(kind),
                label: label.clone(),
            };
            x += entry_width;
            entry
        })
        .collect();

    let plot_left = MARGIN;
    let plot_right = width - MARGIN - VALUE_ROOM;
    let plot_top = legend_y + 32;
    let plot_bottom = plot_top + figures.len() as i32 * ROW_HEIGHT + 6;
    let plot_width = (plot_right - plot_left) as f64;

    let max_rate = figures
        .iter()
        .map(|figure| figure.msgs_per_sec)
        .filter(|rate| rate.is_finite())
        .fold(0.0, f64::max);
    let (step, x_max) = if max_rate > 0.0 {
        let step = nice_step(max_rate, 8);
        (step, (max_rate / step).ceil() * step)
    } else {
        (0.2, 1.0)
    };
    let x_of = |value: f64| plot_left + (value / x_max * plot_width).round() as i32;

    let bars = figures
        .iter()
        .enumerate()
        .map(|(index, figure)| {
            let row_top = plot_top + 6 + index as i32 * ROW_HEIGHT;
            let rate = if figure.msgs_per_sec.is_finite() {
                figure.msgs_per_sec.max(0.0)
            } else {
                0.0
            };
            let mut right = x_of(rate);
            if rate > 0.0 {
                right = right.max(plot_left + 1);
            }
            let bar_top = row_top + BAR_OFFSET;
            let mut value_label = format!("{} msg/s", format_rate(figure.msgs_per_sec));
            if let Some(ratio) = figure.ratio_to_ceiling.filter(|ratio| ratio.is_finite()) {
                value_label.push_str(&format!(" · {ratio:.2}× ceiling"));
            }
            BarLayout {
                name: fit(&figure.scenario, TEXT_SIZE, text_room),
                name_at: (plot_left, row_top),
                top_left: (plot_left, bar_top),
                bottom_right: (right, bar_top + BAR_HEIGHT),
                value_label,
                value_at: (right + 8, bar_top + (BAR_HEIGHT - TEXT_SIZE as i32) / 2),
                colour: colour_of(&figure.kind),
            }
        })
        .collect();

    let steps = (x_max / step).round() as usize;
    let ticks = (0..=steps)
        .map(|n| {
            let value = n as f64 * step;
            let label = tick_label(value);
            let x = x_of(value);
            Tick {
                x,
                value,
                label_at: (x - text_width(&label, SMALL_SIZE) / 2, plot_bottom + 6),
                label,
            }
        })
        .collect();

    let axis_caption = "messages per second (median of the rounds)".to_owned();
    let axis_caption_at = (
        (plot_left + plot_right) / 2 - text_width(&axis_caption, SMALL_SIZE) / 2,
        plot_bottom + 28,
    );
    ChartLayout {
        width: WIDTH,
        height: (plot_bottom + 56) as u32,
        title: fit(title, TITLE_SIZE, text_room),
        title_at,
        legend,
        plot: ((plot_left, plot_top), (plot_right, plot_bottom)),
        bars,
        ticks,
        axis_caption,
        axis_caption_at,
    }
}

/// Loads [`FONT_PATH`] and registers it with plotters, once per process.
fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT_PATH).map_err(|error| {
                format!(
                    "the PNG chart needs the font {FONT_PATH} ({error}); install the Debian package \
                     {FONT_PACKAGE} (`./x deps` does)"
                )
            })?;
            // plotters keeps a &'static reference; this runs once per process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT_PATH} is not a usable TrueType font (package {FONT_PACKAGE})"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Draws a horizontal bar chart of msg/s per scenario (value and × ceiling next to each bar, colours by
/// kind) and writes it to `path` as an RGB PNG.
pub fn plot_png(path: &Path, figures: &[Figure], title: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!figures.is_empty(), "no figures to plot");
    register_font()?;
    let layout = layout_chart(figures, title);
    let (width, height) = (layout.width, layout.height);
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    draw(&layout, &mut pixels).context("drawing the chart")?;

    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(())
}

/// Renders `layout` into an RGB buffer of its size.
fn draw(layout: &ChartLayout, pixels: &mut [u8]) -> anyhow::Result<()> {
    let root = BitMapBackend::with_buffer(pixels, (layout.width, layout.height)).into_drawing_area();
    root.fill(&WHITE)?;
    let text = |size: f64, colour: RGBColor| {
        FontDesc::new(FontFamily::Name(FONT_FAMILY), size, FontStyle::Normal).color(&colour)
    };
    let rgb = |(r, g, b): Rgb| RGBColor(r, g, b);
    let ink = RGBColor(34, 34, 34);
    let grey = RGBColor(90, 90, 90);

    root.draw(&Text::new(
        layout.title.clone(),
        layout.title_at,
        text(TITLE_SIZE, ink),
    ))?;
    for entry in &layout.legend {
        let (x, y) = entry.swatch_top_left;
        root.draw(&Rectangle::new(
            [(x, y), (x + 14, y + 14)],
            rgb(entry.colour).filled(),
        ))?;
        root.draw(&Text::new(
            entry.label.clone(),
            entry.label_at,
            text(SMALL_SIZE, grey),
        ))?;
    }

    let ((_, top), (_, bottom)) = layout.plot;
    for tick in &layout.ticks {
        let colour = if tick.value == 0.0 {
            grey
        } else {
            RGBColor(225, 225, 225)
        };
        root.draw(&PathElement::new(vec![(tick.x, top), (tick.x, bottom)], colour))?;
        root.draw(&Text::new(
            tick.label.clone(),
            tick.label_at,
            text(SMALL_SIZE, grey),
        ))?;
    }
    let ((left, _), (right, _)) = layout.plot;
    root.draw(&PathElement::new(vec![(left, bottom), (right, bottom)], grey))?;
    root.draw(&Text::new(
        layout.axis_caption.clone(),
        layout.axis_caption_at,
        text(SMALL_SIZE, grey),
    ))?;

    for bar in &layout.bars {
        root.draw(&Text::new(bar.name.clone(), bar.name_at, text(TEXT_SIZE, ink)))?;
        if bar.bottom_right.0 > bar.top_left.0 {
            root.draw(&Rectangle::new(
                [bar.top_left, bar.bottom_right],
                rgb(bar.colour).filled(),
            ))?;
        }
        root.draw(&Text::new(
            bar.value_label.clone(),
            bar.value_at,
            text(TEXT_SIZE, ink),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_figures;

    #[test]
    fn layout_has_one_bar_per_figure_proportional_to_msg_per_sec() {
        let figures = sample_figures();
        let layout = layout_chart(&figures, "penguin-bench intake, 2026-11-26 09:41 UTC");
        assert_eq!(layout.bars.len(), 3);
        let ((left, top), (right, bottom)) = layout.plot;
        let x_max = layout.ticks.last().unwrap().value;
        assert!((28927.0..28927.0 * 1.3).contains(&x_max), "{x_max}");
        for (bar, figure) in layout.bars.iter().zip(&figures) {
            assert_eq!(bar.name, figure.scenario);
            assert_eq!(bar.colour, colour_of(&figure.kind));
            assert_eq!(bar.top_left.0, left);
            let expected = figure.msgs_per_sec / x_max * (right - left) as f64;
            let length = (bar.bottom_right.0 - bar.top_left.0) as f64;
            assert!((length - expected).abs() <= 1.0, "{length} vs {expected}");
            assert!(bar.top_left.1 >= top && bar.bottom_right.1 <= bottom);
            // The value label starts right of the bar and fits in the image.
            assert!(bar.value_at.0 > bar.bottom_right.0);
            let label_end = bar.value_at.0 + text_width(&bar.value_label, TEXT_SIZE);
            assert!(label_end <= layout.width as i32, "{} too wide", bar.value_label);
        }
        // Rows in the given order, without overlap.
        for pair in layout.bars.windows(2) {
            assert!(pair[0].bottom_right.1 < pair[1].name_at.1);
        }
        assert_eq!(layout.bars[0].value_label, "28927 msg/s · 1.00× ceiling");
        assert_eq!(layout.bars[1].value_label, "1776 msg/s · 0.06× ceiling");
        assert_eq!(layout.bars[2].value_label, "12027 msg/s · 0.42× ceiling");
        assert!(
            layout.height as i32 > bottom + 40,
            "room for the tick labels and caption"
        );
    }

    #[test]
    fn a_long_legend_wraps_inside_the_image() {
        let kinds = [
            "ceiling",
            "postfix",
            "penguin",
            "penguin-shaping",
            "penguin-reception",
            "penguin-dkim-rsa",
            "penguin-dkim-ed25519",
        ];
        let figures: Vec<Figure> = kinds
            .iter()
            .map(|kind| Figure {
                kind: (*kind).into(),
                ..sample_figures()[2].clone()
            })
            .collect();
        let layout = layout_chart(&figures, "title");
        assert_eq!(layout.legend.len(), kinds.len());
        for entry in &layout.legend {
            let right = entry.label_at.0 + text_width(&entry.label, SMALL_SIZE);
            assert!(right <= WIDTH as i32 - MARGIN, "{} ends at {right}", entry.label);
        }
        let last_row = layout.legend.iter().map(|e| e.swatch_top_left.1).max().unwrap();
        assert!(
            last_row > layout.legend[0].swatch_top_left.1,
            "wrapped onto a second row"
        );
        assert!(
            layout.plot.0.1 > last_row + 16,
            "the plot starts below the legend"
        );
    }

    #[test]
    fn layout_grid_legend_and_colours() {
        let mut figures = sample_figures();
        figures.push(Figure {
            kind: "penguin".into(),
            ratio_to_ceiling: None,
            ..figures[2].clone()
        });
        let layout = layout_chart(&figures, "title");
        let labels: Vec<&str> = layout.legend.iter().map(|entry| entry.label.as_str()).collect();
        assert_eq!(labels, ["loopback ceiling", "Postfix", "penguin-mta"]);
        let colours: std::collections::HashSet<Rgb> = [
            "ceiling",
            "postfix",
            "penguin",
            "penguin-dkim-rsa",
            "penguin-dkim-ed25519",
            "penguin-shaping",
            "penguin-reception",
            "other",
        ]
        .map(colour_of)
        .into();
        assert_eq!(colours.len(), 8, "each kind has its own colour");
        assert_eq!(layout.bars[3].value_label, "12027 msg/s");
        let ticks: Vec<&str> = layout.ticks.iter().map(|tick| tick.label.as_str()).collect();
        assert_eq!(ticks, ["0", "5k", "10k", "15k", "20k", "25k", "30k"]);
        assert!(layout.ticks.windows(2).all(|pair| pair[0].x < pair[1].x));
        assert_eq!(layout.ticks[0].x, layout.plot.0.0);
        assert_eq!(layout.ticks.last().unwrap().x, layout.plot.1.0);
    }

    #[test]
    fn layout_edge_cases() {
        assert_eq!(nice_step(28927.0, 5), 10_000.0);
        assert_eq!(nice_step(12.0, 5), 2.5);
        assert_eq!(nice_step(0.9, 5), 0.2);
        assert_eq!(tick_label(2500.0), "2.5k");
        assert_eq!(tick_label(750.0), "750");
        let mut figures = sample_figures();
        figures[0].scenario = "a very long scenario name ".repeat(10);
        figures[1].msgs_per_sec = f64::NAN;
        figures[2].msgs_per_sec = 0.0;
        let layout = layout_chart(&figures, "title");
        assert!(layout.bars[0].name.ends_with('…'));
        assert!(text_width(&layout.bars[0].name, TEXT_SIZE) <= layout.width as i32 - 2 * MARGIN);
        assert_eq!(layout.bars[1].bottom_right.0, layout.bars[1].top_left.0);
        assert_eq!(layout.bars[1].value_label, "— msg/s · 0.06× ceiling");
        assert_eq!(layout.bars[2].bottom_right.0, layout.bars[2].top_left.0);
        let empty = layout_chart(&[], "nothing");
        assert!(empty.bars.is_empty() && !empty.ticks.is_empty());
    }

    #[test]
    fn plot_png_writes_a_png_of_the_layout() {
        assert!(
            Path::new(FONT_PATH).exists(),
            "{FONT_PATH} is missing: `./x deps` installs {FONT_PACKAGE}, which the PNG chart needs"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.png");
        let figures = sample_figures();
        plot_png(&path, &figures, "penguin-bench intake — 2026-11-26 09:41 UTC").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 5_000, "only {} bytes", bytes.len());

        let layout = layout_chart(&figures, "penguin-bench intake — 2026-11-26 09:41 UTC");
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; decoder.output_buffer_size().unwrap()];
        let info = decoder.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), (layout.width, layout.height));
        // The middle of each bar has its kind's colour; some text was drawn (dark pixels).
        let pixel = |(x, y): (i32, i32)| {
            let at = (y as usize * info.width as usize + x as usize) * 3;
            (pixels[at], pixels[at + 1], pixels[at + 2])
        };
        for bar in &layout.bars {
            let middle = (
                (bar.top_left.0 + bar.bottom_right.0) / 2,
                (bar.top_left.1 + bar.bottom_right.1) / 2,
            );
            assert_eq!(pixel(middle), bar.colour, "{}", bar.name);
        }
        let dark = pixels
            .chunks(3)
            .filter(|rgb| rgb.iter().all(|c| *c < 100))
            .count();
        assert!(dark > 2_000, "only {dark} dark pixels: was any text drawn?");
        assert_eq!(pixel((2, 2)), (255, 255, 255));
    }

    #[test]
    fn plot_png_refuses_no_figures() {
        let dir = tempfile::tempdir().unwrap();
        let error = plot_png(&dir.path().join("x.png"), &[], "t").unwrap_err();
        assert!(error.to_string().contains("no figures"), "{error}");
    }
}
