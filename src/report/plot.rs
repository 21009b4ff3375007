//! The MMTT curve of one visit as an SVG image for the HTML reports:
//! C-peptide on the left axis, glucose on the right, against the nominal
//! minutes of `mmtt.timepoints`.
//!
//! Drawn with plotters' SVG backend and no font feature: the SVG names a
//! font family and the browser lays out the text, so no system library
//! (freetype, fontconfig) is needed.
//!
//! Markers (all in the series colour unless said):
//! * measured value: a filled circle, joined to its neighbours by a line that
//!   breaks at a missing point;
//! * censored or BLQ value: a hollow circle at the bound;
//! * missing (a scheduled minute without a current result): a cross just
//!   above the x axis at that minute (C-peptide lowest, glucose above it);
//! * flagged (an open mismatch in that slot): a red ring around the point,
//!   or around the missing cross when the value is held back.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

use crate::report::format::format_value;

/// Image size in pixels (the page scales it down to fit).
pub const WIDTH: u32 = 720;
/// The chart's height; the legend strip is below it.
const CHART_HEIGHT: u32 = 300;
const LEGEND_HEIGHT: u32 = 30;
/// Total image height.
pub const HEIGHT: u32 = CHART_HEIGHT + LEGEND_HEIGHT;

/// C-peptide's colour, as the SVG writes it.
pub const LEFT_COLOR: &str = "#1F5FA8";
/// Glucose's colour, as the SVG writes it.
pub const RIGHT_COLOR: &str = "#B8520F";
/// The ring around a flagged point, as the SVG writes it.
pub const FLAG_COLOR: &str = "#D11A1A";

const LEFT_RGB: RGBColor = RGBColor(0x1F, 0x5F, 0xA8);
const RIGHT_RGB: RGBColor = RGBColor(0xB8, 0x52, 0x0F);
const FLAG_RGB: RGBColor = RGBColor(0xD1, 0x1A, 0x1A);
const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);
const GRID: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
/// Pixels above the x axis of a missing cross, left series then right.
const MISSING_LIFT: [i32; 2] = [7, 19];
const FONT: &str = "sans-serif";

/// One plotted value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    /// A measured value in the series' unit.
    Measured(f64),
    /// A censored or BLQ value, drawn hollow at its bound.
    Censored(f64),
}

impl Point {
    fn value(self) -> f64 {
        match self {
            Point::Measured(v) | Point::Censored(v) => v,
        }
    }
}

/// One analyte of a visit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Shown in the legend, e.g. `C-peptide`.
    pub name: String,
    /// The axis label, e.g. `C-peptide (nmol/L)`.
    pub axis: String,
    /// Values by nominal minute.
    pub points: BTreeMap<i32, Point>,
    /// Minutes with an open mismatch.
    pub flagged: BTreeSet<i32>,
}

impl Series {
    /// Scheduled minutes without a value.
    pub fn missing<'a>(&'a self, timepoints: &'a [i32]) -> impl Iterator<Item = i32> + 'a {
        timepoints.iter().copied().filter(|m| !self.points.contains_key(m))
    }
}

/// One visit's curve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    /// The scheduled minutes: the x ticks, and where a missing value is marked.
    pub timepoints: Vec<i32>,
    /// C-peptide, on the left axis.
    pub left: Option<Series>,
    /// Glucose, on the right axis.
    pub right: Option<Series>,
}

/// Drawing the curve failed (plotters' error, as text).
#[derive(Debug, thiserror::Error)]
#[error("drawing the MMTT curve: {0}")]
pub struct PlotError(String);

fn fail(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// The nominal-minute axis: linear, with ticks exactly at the scheduled minutes.
#[derive(Debug, Clone)]
struct Minutes {
    range: Range<i32>,
    ticks: Vec<i32>,
}

impl Ranged for Minutes {
    type FormatOption = DefaultFormatting;
    type ValueType = i32;

    fn map(&self, value: &i32, limit: (i32, i32)) -> i32 {
        // In f64: minutes come from outside and may be anything an i32 holds.
        let span = (f64::from(self.range.end) - f64::from(self.range.start)).max(1.0);
        let at = (f64::from(*value) - f64::from(self.range.start)) / span;
        limit.0 + (at * (f64::from(limit.1) - f64::from(limit.0))).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<i32> {
        // Grid lines only at the bold (labelled) points.
        if hint.weight().allow_light_points() { Vec::new() } else { self.ticks.clone() }
    }

    fn range(&self) -> Range<i32> {
        self.range.clone()
    }
}

/// Keep text that plotters writes into the SVG free of control characters,
/// which XML does not allow (plotters escapes the markup characters itself).
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect()
}

/// A y range from 0 (or the lowest value, should one be negative) with some
/// room above the highest value.
fn y_range(series: Option<&Series>) -> Range<f64> {
    let values = || series.into_iter().flat_map(|s| s.points.values()).map(|p| p.value()).filter(|v| v.is_finite());
    let top = values().fold(0.0f64, f64::max);
    let bottom = values().fold(0.0f64, f64::min);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    bottom * 1.15..top
}

fn axis_label(v: &f64) -> String {
    // 6 significant digits keep tick labels short and free of float noise.
    let rounded: f64 = format!("{v:.5e}").parse().unwrap_or(*v);
    format_value(rounded)
}

/// The curve as one `<svg>` element (no XML prolog), ready to put in a page.
pub fn curve_svg(curve: &Curve) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(fail)?;
        let (chart_area, legend_area) = root.split_vertically(CHART_HEIGHT);
        draw_chart(&chart_area, curve)?;
        draw_legend(&legend_area, curve)?;
        root.present().map_err(fail)?;
    }
    // The backend writes no prolog today; make sure none ends up inside HTML.
    if let Some(start) = svg.find("<svg") {
        svg.drain(..start);
    }
    Ok(svg)
}

fn draw_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    curve: &Curve,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let minutes = || {
        let all =
            curve.timepoints.iter().chain(curve.left.iter().chain(&curve.right).flat_map(|s| s.points.keys())).copied();
        let (lo, hi) = all.fold((i32::MAX, i32::MIN), |(lo, hi), m| (lo.min(m), hi.max(m)));
        let (lo, hi) = if lo > hi { (0, 120) } else { (lo, hi) };
        // Saturating: a minute from outside can be anything an i32 holds.
        let pad = (hi.saturating_sub(lo) / 20).max(2);
        Minutes { range: lo.saturating_sub(pad)..hi.saturating_add(pad), ticks: curve.timepoints.clone() }
    };
    let text = |size: u32| (FONT, size).into_font().color(&INK);
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(14)
        .x_label_area_size(42)
        .y_label_area_size(if curve.left.is_some() { 64 } else { 10 })
        .right_y_label_area_size(if curve.right.is_some() { 64 } else { 10 })
        .build_cartesian_2d(minutes(), y_range(curve.left.as_ref()))
        .map_err(fail)?
        .set_secondary_coord(minutes(), y_range(curve.right.as_ref()));

    let left_axis = curve.left.as_ref().map(|s| clean(&s.axis)).unwrap_or_default();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .bold_line_style(GRID)
        .axis_style(INK)
        .x_labels(curve.timepoints.len().max(2))
        .y_labels(6)
        .x_desc("minutes after meal start")
        .y_desc(left_axis)
        .label_style(text(15))
        .axis_desc_style(text(15))
        .y_label_formatter(&axis_label)
        .draw()
        .map_err(fail)?;
    if let Some(right) = &curve.right {
        chart
            .configure_secondary_axes()
            .axis_style(INK)
            .y_labels(6)
            .y_desc(clean(&right.axis))
            .label_style(text(15))
            .axis_desc_style(text(15))
            .y_label_formatter(&axis_label)
            .draw()
            .map_err(fail)?;
    }

    // The missing crosses sit a fixed number of pixels above the bottom of the plot.
    let height = f64::from(chart.plotting_area().dim_in_pixel().1.max(1));
    let lift = |range: &Range<f64>, pixels: i32| range.start + f64::from(pixels) * (range.end - range.start) / height;
    if let Some(series) = &curve.left {
        let color = LEFT_RGB;
        let lift = lift(&y_range(Some(series)), MISSING_LIFT[0]);
        chart.draw_series(lines(series, &curve.timepoints, color)).map_err(fail)?;
        chart.draw_series(markers(series, color)).map_err(fail)?;
        chart.draw_series(missing(series, &curve.timepoints, color, lift)).map_err(fail)?;
        chart.draw_series(flags(series, &curve.timepoints, lift)).map_err(fail)?;
    }
    if let Some(series) = &curve.right {
        let color = RIGHT_RGB;
        let lift = lift(&y_range(Some(series)), MISSING_LIFT[1]);
        chart.draw_secondary_series(lines(series, &curve.timepoints, color)).map_err(fail)?;
        chart.draw_secondary_series(markers(series, color)).map_err(fail)?;
        chart.draw_secondary_series(missing(series, &curve.timepoints, color, lift)).map_err(fail)?;
        chart.draw_secondary_series(flags(series, &curve.timepoints, lift)).map_err(fail)?;
    }
    Ok(())
}

/// The line through the values, broken where a scheduled minute is missing.
fn lines(series: &Series, timepoints: &[i32], color: RGBColor) -> Vec<PathElement<(i32, f64)>> {
    let mut runs: Vec<Vec<(i32, f64)>> = vec![Vec::new()];
    for (&minute, point) in &series.points {
        let gap = timepoints.iter().any(|&t| {
            t < minute && !series.points.contains_key(&t) && runs.last().and_then(|r| r.last()).is_some_and(|l| l.0 < t)
        });
        if gap {
            runs.push(Vec::new());
        }
        if let Some(run) = runs.last_mut() {
            run.push((minute, point.value()));
        }
    }
    runs.into_iter().filter(|r| r.len() > 1).map(|r| PathElement::new(r, color.stroke_width(2))).collect()
}

fn markers(series: &Series, color: RGBColor) -> Vec<Circle<(i32, f64), i32>> {
    series
        .points
        .iter()
        .map(|(&minute, &point)| match point {
            Point::Measured(v) => Circle::new((minute, v), 4, color.filled()),
            Point::Censored(v) => Circle::new((minute, v), 4, WHITE.filled().stroke_width(2)),
        })
        .chain(series.points.iter().filter_map(|(&minute, &point)| match point {
            // The hollow marker: a white disc (hiding the line) with a ring in the series colour.
            Point::Censored(v) => Some(Circle::new((minute, v), 4, color.stroke_width(2))),
            Point::Measured(_) => None,
        }))
        .collect()
}

/// Crosses where a scheduled minute has no value, at `lift` (near the x axis).
fn missing(series: &Series, timepoints: &[i32], color: RGBColor, lift: f64) -> Vec<Cross<(i32, f64), i32>> {
    series.missing(timepoints).map(|minute| Cross::new((minute, lift), 4, color.stroke_width(2))).collect()
}

/// Rings around flagged points; a held-back value has no point, so its ring
/// goes around the missing cross.
fn flags(series: &Series, timepoints: &[i32], lift: f64) -> Vec<Circle<(i32, f64), i32>> {
    let ring = FLAG_RGB.stroke_width(2);
    series
        .flagged
        .iter()
        .filter_map(|&minute| match series.points.get(&minute) {
            Some(point) => Some(Circle::new((minute, point.value()), 8, ring)),
            None if timepoints.contains(&minute) => Some(Circle::new((minute, lift), 8, ring)),
            None => None,
        })
        .collect()
}

/// A legend entry's sample marker.
enum Symbol {
    Dot(RGBColor),
    Ring(RGBColor, i32),
    Cross,
}

/// One line of symbols and words below the chart.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    curve: &Curve,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let font = (FONT, 15).into_font().color(&INK).pos(Pos::new(HPos::Left, VPos::Center));
    let mut items: Vec<(Symbol, &str)> = Vec::new();
    if let Some(s) = &curve.left {
        items.push((Symbol::Dot(LEFT_RGB), &s.name));
    }
    if let Some(s) = &curve.right {
        items.push((Symbol::Dot(RIGHT_RGB), &s.name));
    }
    items.push((Symbol::Ring(INK, 4), "censored (at its bound)"));
    items.push((Symbol::Cross, "missing"));
    items.push((Symbol::Ring(FLAG_RGB, 7), "open mismatch"));
    let y = i32::try_from(LEGEND_HEIGHT / 2).unwrap_or(15);
    let mut x = 70;
    for (symbol, label) in items {
        match symbol {
            Symbol::Dot(color) => area.draw(&Circle::new((x, y), 4, color.filled())),
            Symbol::Ring(color, r) => area.draw(&Circle::new((x, y), r, color.stroke_width(2))),
            Symbol::Cross => area.draw(&Cross::new((x, y), 4, INK.stroke_width(2))),
        }
        .map_err(fail)?;
        area.draw(&Text::new(clean(label), (x + 12, y), font.clone())).map_err(fail)?;
        // The browser's font is unknown here; about 7 px a character at this size.
        x += 34 + 7 * i32::try_from(label.chars().count()).unwrap_or(20);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(i32, Point)], flagged: &[i32]) -> Series {
        Series {
            name: name.into(),
            axis: format!("{name} (unit)"),
            points: points.iter().copied().collect(),
            flagged: flagged.iter().copied().collect(),
        }
    }

    const TIMES: [i32; 7] = [-10, 0, 15, 30, 60, 90, 120];

    #[test]
    fn the_line_breaks_at_a_missing_minute() {
        let s = series(
            "C",
            &[
                (0, Point::Measured(1.0)),
                (15, Point::Measured(2.0)),
                (60, Point::Measured(3.0)),
                (90, Point::Measured(4.0)),
            ],
            &[],
        );
        let runs = lines(&s, &TIMES, LEFT_RGB);
        assert_eq!(runs.len(), 2, "0–15 and 60–90; 30 is missing");
        assert_eq!(s.missing(&TIMES).collect::<Vec<_>>(), [-10, 30, 120]);
    }

    #[test]
    fn the_svg_is_one_element_with_markers_and_text_escaped() {
        let curve = Curve {
            timepoints: TIMES.to_vec(),
            left: Some(series("C-peptide <&>", &[(0, Point::Censored(0.01)), (15, Point::Measured(0.4))], &[15])),
            right: Some(series("glucose", &[(0, Point::Measured(5.5))], &[30])),
        };
        let svg = curve_svg(&curve).unwrap();
        assert!(svg.starts_with("<svg "), "{}", &svg[..40]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("C-peptide &lt;&amp;&gt;"), "labels are escaped");
        assert!(!svg.contains("C-peptide <&>"));
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let circles = doc.descendants().filter(|n| n.has_tag_name("circle")).collect::<Vec<_>>();
        let rings = circles.iter().filter(|c| c.attribute("stroke") == Some(FLAG_COLOR)).count();
        assert_eq!(rings, 3, "two flagged slots and the legend's sample");
        let hollow = circles
            .iter()
            .filter(|c| c.attribute("stroke") == Some(LEFT_COLOR) && c.attribute("fill") == Some("none"))
            .count();
        assert_eq!(hollow, 1, "the censored C-peptide at minute 0");
        // Five missing C-peptide minutes and six glucose ones, two lines a cross.
        let crosses = |color: &str| {
            doc.descendants().filter(|n| n.has_tag_name("line") && n.attribute("stroke") == Some(color)).count()
        };
        assert_eq!((crosses(LEFT_COLOR), crosses(RIGHT_COLOR)), (10, 12));
    }
}
