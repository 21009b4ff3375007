//! The MMTT curves of one participant as one SVG image for the HTML reports:
//! one panel per analyte (C-peptide above glucose), and in each panel every
//! visit on the same axes, so a fall from baseline to follow-up is seen at a
//! glance. Per-visit scaling made a 14-fold drop look the same.
//!
//! Written as SVG text here, not through a plotting crate: the reports need
//! dashed lines, marker shapes and `data-*` attributes that say what each
//! mark is (for tests and for anyone reading the file), and the browser lays
//! out the text, so no font or system library is needed. Every text and
//! attribute value goes through [`escape`].
//!
//! Marks, in the visit's colour and line style:
//! * analyte: C-peptide a circle, glucose a square, any other a triangle;
//! * measured value: a filled marker, joined to its neighbours by the visit's
//!   line, which breaks at a missing minute;
//! * censored or BLQ value: a hollow marker at the bound;
//! * missing (a scheduled minute of a visit that has results): a cross in a
//!   strip under the minute axis, one row per visit, named at its left; a
//!   boxed cross where a data manager withdrew the value. Below the axis, so
//!   it is never read as another visit's low value at the same minute;
//! * open mismatch: a red ring around the point, or around the cross when
//!   the value is held back.
//!
//! A visit with nothing received is named in the legend as such and draws
//! nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use crate::report::format::format_value;
use crate::report::html::{Escaped, escape};

/// Image width in SVG units (the page scales it to the printable width).
pub const WIDTH: f64 = 720.0;
/// One analyte's panel, title and minute labels included.
const PANEL_HEIGHT: f64 = 220.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
/// Room above a panel's plot for its title, and below it for the minute labels.
const TITLE_ROOM: f64 = 30.0;
const LABEL_ROOM: f64 = 34.0;
const LEGEND_ROW: f64 = 22.0;
/// One visit's row in the strip of missing and withdrawn marks under a panel.
const STRIP_ROW: f64 = 14.0;
/// From the minute axis to the strip's first row (the minute labels between).
const STRIP_GAP: f64 = 24.0;
/// About this many units a character at the legend's font size.
const CHAR_WIDTH: f64 = 7.0;

/// The ring around a point with an open mismatch.
pub const FLAG_COLOR: &str = "#D11A1A";
/// Visit colours, in visit order (baseline first when it is configured first).
pub const VISIT_COLORS: [&str; 6] = ["#1F5FA8", "#C26A00", "#1B8A5A", "#7B3294", "#4A4A4A", "#2A9FC4"];
/// Visit line styles (`stroke-dasharray`), so visits differ without colour too.
/// As many as colours: up to six visits differ in both.
pub const VISIT_DASHES: [&str; 6] = ["", "8 4", "2 3", "10 3 2 3", "16 5", "8 3 2 3 2 3"];
const INK: &str = "#333333";
const GRID: &str = "#DDDDDD";

/// A visit's colour and line style, by its position in the chart.
pub fn visit_style(index: usize) -> (&'static str, &'static str) {
    let color = VISIT_COLORS.get(index % VISIT_COLORS.len()).copied().unwrap_or(INK);
    let dash = VISIT_DASHES.get(index % VISIT_DASHES.len()).copied().unwrap_or("");
    (color, dash)
}

/// How the caption names a visit's line, e.g. `blue solid line`.
pub fn visit_style_name(index: usize) -> String {
    const COLORS: [&str; 6] = ["blue", "orange", "green", "purple", "grey", "light blue"];
    const DASHES: [&str; 6] = ["solid", "dashed", "dotted", "dash-dot", "long-dashed", "dash-dot-dot"];
    let color = COLORS.get(index % COLORS.len()).copied().unwrap_or("grey");
    let dash = DASHES.get(index % DASHES.len()).copied().unwrap_or("solid");
    format!("{color} {dash} line")
}

/// An analyte's marker, so analytes differ by more than colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
        }
    }
}

/// One plotted value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    /// A measured value in the panel's unit.
    Measured(f64),
    /// A censored or BLQ value, drawn hollow at its bound.
    Censored(f64),
}

impl Point {
    pub fn value(self) -> f64 {
        match self {
            Point::Measured(v) | Point::Censored(v) => v,
        }
    }
}

/// A visit in the chart, in the order drawn and listed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VisitLine {
    pub code: String,
    /// E.g. `V0 (Baseline)`.
    pub title: String,
    /// The configured baseline visit.
    pub baseline: bool,
    /// Some current result exists for the visit; otherwise it draws nothing.
    pub received: bool,
    /// Which colour and line style ([`visit_style`]): by the visit's place in
    /// `[[visits]]`, so a visit looks the same in every participant's chart.
    pub style: usize,
}

/// One analyte of one visit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Index into [`Chart::visits`].
    pub visit: usize,
    /// Values by nominal minute.
    pub points: BTreeMap<i32, Point>,
    /// Minutes with an open mismatch.
    pub flagged: BTreeSet<i32>,
    /// Minutes whose value a data manager withdrew (rejected or moved).
    pub withdrawn: BTreeSet<i32>,
}

impl Series {
    /// Scheduled minutes without a value.
    pub fn missing<'a>(&'a self, timepoints: &'a [i32]) -> impl Iterator<Item = i32> + 'a {
        timepoints.iter().copied().filter(|m| !self.points.contains_key(m))
    }
}

/// One analyte: every visit's series on one y axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// The configured analyte name, e.g. `c_peptide`.
    pub analyte: String,
    /// Shown, e.g. `C-peptide`.
    pub name: String,
    /// The canonical unit, e.g. `nmol/L`.
    pub unit: String,
    pub shape: Shape,
    /// Only visits that have results.
    pub series: Vec<Series>,
}

/// One participant's curves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chart {
    /// The scheduled minutes: the x ticks, and where a missing value is marked.
    pub timepoints: Vec<i32>,
    pub visits: Vec<VisitLine>,
    pub panels: Vec<Panel>,
}

/// A y axis from its lowest tick to its highest, in steps of `step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YAxis {
    pub min: f64,
    pub max: f64,
    pub step: f64,
}

impl YAxis {
    /// From 0 (or the lowest value, should one be negative) to a round number
    /// at or above the highest value of every visit: one scale for all visits.
    pub fn of(panel: &Panel) -> YAxis {
        let values =
            || panel.series.iter().flat_map(|s| s.points.values()).map(|p| p.value()).filter(|v| v.is_finite());
        let hi = values().fold(0.0f64, f64::max);
        let lo = values().fold(0.0f64, f64::min);
        let span = hi - lo;
        if !(span.is_finite() && span > 0.0) {
            return YAxis { min: lo.min(0.0), max: lo.max(0.0) + 1.0, step: 0.2 };
        }
        let step = nice_step(span / 5.0);
        let min = (lo / step).floor() * step;
        let max = (hi / step).ceil() * step;
        if min.is_finite() && max.is_finite() && max > min {
            YAxis { min, max, step }
        } else {
            YAxis { min: lo, max: hi, step: span / 5.0 }
        }
    }

    /// The tick values, at most 21.
    pub fn ticks(&self) -> Vec<f64> {
        let n = ((self.max - self.min) / self.step).round();
        let n = if n.is_finite() { n.clamp(1.0, 20.0) as usize } else { 1 };
        let step = (self.max - self.min) / n as f64;
        (0..=n).map(|i| self.min + step * i as f64).collect()
    }
}

/// 1, 2, 2.5 or 5 times a power of ten, at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = [1.0, 2.0, 2.5, 5.0].into_iter().find(|n| norm <= n * 1.000_001).unwrap_or(10.0);
    nice * magnitude
}

fn axis_label(v: f64) -> String {
    // 6 significant digits keep tick labels short and free of float noise.
    let rounded: f64 = format!("{v:.5e}").parse().unwrap_or(v);
    format_value(rounded)
}

/// `12.3`: coordinates to a tenth of a unit, written as `format!("{v:.1}")`
/// writes them, without its exact-decimal machinery for most values.
#[derive(Clone, Copy)]
struct N(f64);

impl fmt::Display for N {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        // Ten times the magnitude, off a tie by far more than its rounding
        // error (below 1e-9 under a million): rounding it is what `{:.1}`
        // does with the exact value. Ties (12.25) and the rest go the long way.
        let tenths = v.abs() * 10.0;
        if v.abs() < 1e6 && (tenths - tenths.floor() - 0.5).abs() > 1e-6 {
            let t = tenths.round() as u64;
            let sign = if v.is_sign_negative() { "-" } else { "" };
            return write!(f, "{sign}{}.{}", t / 10, t % 10);
        }
        write!(f, "{v:.1}")
    }
}

/// The minute axis: scheduled minutes and any drawn minute, with some room.
struct Minutes {
    lo: f64,
    hi: f64,
}

impl Minutes {
    fn of(chart: &Chart) -> Minutes {
        let drawn = chart.panels.iter().flat_map(|p| &p.series).flat_map(|s| s.points.keys());
        let all = chart.timepoints.iter().chain(drawn).map(|&m| f64::from(m));
        let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), m| (lo.min(m), hi.max(m)));
        let (lo, hi) = if lo > hi { (0.0, 120.0) } else { (lo, hi) };
        let pad = ((hi - lo) / 20.0).max(2.0);
        Minutes { lo: lo - pad, hi: hi + pad }
    }

    fn x(&self, minute: i32) -> f64 {
        LEFT + (f64::from(minute) - self.lo) / (self.hi - self.lo) * (WIDTH - LEFT - RIGHT)
    }
}

/// Pixel rows of one panel's plot area.
struct Plot {
    top: f64,
    bottom: f64,
    axis: YAxis,
}

impl Plot {
    fn y(&self, value: f64) -> f64 {
        self.bottom - (value - self.axis.min) / (self.axis.max - self.axis.min) * (self.bottom - self.top)
    }
}

/// A marker's fill and outline colours.
#[derive(Clone, Copy)]
struct Paint<'a> {
    fill: &'a str,
    stroke: &'a str,
}

/// A marker of `shape` centred at (x, y); `title`, when given, is written
/// as it displays (already escaped).
fn marker(
    out: &mut String,
    shape: Shape,
    (x, y): (f64, f64),
    paint: Paint<'_>,
    attrs: impl fmt::Display,
    title: Option<impl fmt::Display>,
) {
    let r = 4.0;
    let (fill, stroke) = (paint.fill, paint.stroke);
    let _ = match shape {
        Shape::Circle => write!(out, "<circle {attrs} cx=\"{}\" cy=\"{}\" r=\"{r}\"", N(x), N(y)),
        Shape::Square => write!(
            out,
            "<rect {attrs} x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"",
            N(x - r),
            N(y - r),
            N(2.0 * r),
            N(2.0 * r)
        ),
        Shape::Triangle => write!(
            out,
            "<polygon {attrs} points=\"{},{} {},{} {},{}\"",
            N(x),
            N(y - r - 1.0),
            N(x - r - 0.5),
            N(y + r),
            N(x + r + 0.5),
            N(y + r)
        ),
    };
    let _ = write!(out, " fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"");
    match title {
        None => out.push_str("/>"),
        Some(title) => {
            let tag = match shape {
                Shape::Circle => "circle",
                Shape::Square => "rect",
                Shape::Triangle => "polygon",
            };
            let _ = write!(out, "><title>{title}</title></{tag}>");
        }
    }
}

/// A cross in a box: the chart and its legend draw the same mark.
fn withdrawn_mark(out: &mut String, x: f64, y: f64, color: &str) {
    let _ = write!(
        out,
        "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"none\" stroke=\"{color}\"/>",
        N(x - 6.0),
        N(y - 6.0)
    );
    cross(out, x, y, color);
}

fn cross(out: &mut String, x: f64, y: f64, color: &str) {
    let r = 4.0;
    let _ = write!(
        out,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"2\"/>\
         <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"2\"/>",
        N(x - r),
        N(y - r),
        N(x + r),
        N(y + r),
        N(x - r),
        N(y + r),
        N(x + r),
        N(y - r)
    );
}

fn ring(out: &mut String, x: f64, y: f64, r: f64, color: &str, attrs: impl fmt::Display) {
    let _ = write!(
        out,
        "<circle {attrs} cx=\"{}\" cy=\"{}\" r=\"{r}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
        N(x),
        N(y)
    );
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, attrs: impl fmt::Display, content: &str) {
    let _ =
        write!(out, "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" {attrs}>{}</text>", N(x), N(y), Escaped(content));
}

/// The lines through a series' values, broken where a scheduled minute is missing.
fn runs(series: &Series, timepoints: &[i32]) -> Vec<Vec<(i32, f64)>> {
    let mut runs: Vec<Vec<(i32, f64)>> = vec![Vec::new()];
    for (&minute, point) in &series.points {
        let last = runs.last().and_then(|r| r.last()).map(|l| l.0);
        let gap = last
            .is_some_and(|last| timepoints.iter().any(|&t| last < t && t < minute && !series.points.contains_key(&t)));
        if gap {
            runs.push(Vec::new());
        }
        if let Some(run) = runs.last_mut() {
            run.push((minute, point.value()));
        }
    }
    runs.into_iter().filter(|r| r.len() > 1).collect()
}

/// What the legend needs to explain.
#[derive(Default)]
struct Seen {
    censored: bool,
    missing: bool,
    withdrawn: bool,
    flagged: bool,
}

/// The chart as one `<svg>` element, ready to put in a page. `label` is its
/// accessible name.
pub fn chart_svg(chart: &Chart, label: &str) -> String {
    let mut out = String::new();
    write_chart_svg(&mut out, chart, label);
    out
}

/// [`chart_svg`], appended to `out`.
pub fn write_chart_svg(out: &mut String, chart: &Chart, label: &str) {
    let minutes = Minutes::of(chart);
    let mut body = String::new();
    let mut seen = Seen::default();
    let mut top = 0.0;
    for panel in &chart.panels {
        let strip = Strip::of(panel, &chart.timepoints);
        draw_panel(&mut body, chart, panel, &minutes, &strip, top, &mut seen);
        top += PANEL_HEIGHT + strip.height();
    }
    // The minute axis is named once, under the last panel.
    text(&mut body, (LEFT + WIDTH - RIGHT) / 2.0, top + 6.0, "middle", "class=\"x-title\"", "minutes after meal start");
    top += 14.0;
    let legend = legend(chart, &seen, top + 6.0);
    let height = top + legend.1 + 8.0;
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"mmtt\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         role=\"img\" aria-label=\"{label}\" font-family=\"sans-serif\" font-size=\"13\" fill=\"{INK}\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#FFFFFF\"/>",
        w = N(WIDTH),
        h = N(height),
        label = Escaped(label),
    );
    out.push_str(&body);
    out.push_str(&legend.0);
    out.push_str("</svg>");
}

/// The visits (indices into [`Chart::visits`]) with a missing or withdrawn
/// mark in a panel: one strip row each, under that panel.
struct Strip(Vec<usize>);

impl Strip {
    fn of(panel: &Panel, timepoints: &[i32]) -> Strip {
        let mut rows: Vec<usize> =
            panel.series.iter().filter(|s| s.missing(timepoints).next().is_some()).map(|s| s.visit).collect();
        rows.sort_unstable();
        rows.dedup();
        Strip(rows)
    }

    fn height(&self) -> f64 {
        STRIP_ROW * self.0.len() as f64
    }

    /// The centre line of a visit's row under a plot whose axis is at `bottom`.
    fn y(&self, visit: usize, bottom: f64) -> Option<f64> {
        let row = self.0.iter().position(|v| *v == visit)?;
        Some(bottom + STRIP_GAP + STRIP_ROW * (row as f64 + 0.5))
    }
}

fn draw_panel(
    out: &mut String,
    chart: &Chart,
    panel: &Panel,
    minutes: &Minutes,
    strip: &Strip,
    top: f64,
    seen: &mut Seen,
) {
    let plot = Plot { top: top + TITLE_ROOM, bottom: top + PANEL_HEIGHT - LABEL_ROOM, axis: YAxis::of(panel) };
    let _ = write!(
        out,
        "<g class=\"panel\" data-analyte=\"{}\" data-unit=\"{}\" data-shape=\"{}\" data-y-min=\"{}\" data-y-max=\"{}\">",
        escape(&panel.analyte),
        escape(&panel.unit),
        panel.shape.name(),
        axis_label(plot.axis.min),
        axis_label(plot.axis.max),
    );
    let title = format!("{} ({}), {}s; one y axis for every visit", panel.name, panel.unit, panel.shape.name());
    text(out, LEFT, top + 18.0, "start", "class=\"panel-title\" font-weight=\"600\"", &title);
    // Grid and y ticks.
    let right = WIDTH - RIGHT;
    for tick in plot.axis.ticks() {
        let y = plot.y(tick);
        let label = axis_label(tick);
        let _ = write!(
            out,
            "<line class=\"y-grid\" data-value=\"{label}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{GRID}\"/>",
            N(LEFT),
            N(y),
            N(right),
            N(y)
        );
        text(out, LEFT - 6.0, y + 4.0, "end", "class=\"y-tick\"", &label);
    }
    for &m in &chart.timepoints {
        let x = minutes.x(m);
        let _ = write!(
            out,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{GRID}\"/>",
            N(x),
            N(plot.top),
            N(x),
            N(plot.bottom)
        );
        text(out, x, plot.bottom + 16.0, "middle", "class=\"x-tick\"", &m.to_string());
    }
    let _ = write!(
        out,
        "<path d=\"M{} {} V{} H{}\" fill=\"none\" stroke=\"{INK}\"/>",
        N(LEFT),
        N(plot.top),
        N(plot.bottom),
        N(right)
    );
    // The unit again beside the axis, for a reader who starts there.
    let mid = (plot.top + plot.bottom) / 2.0;
    let _ = write!(
        out,
        "<text class=\"y-title\" x=\"0\" y=\"0\" text-anchor=\"middle\" transform=\"translate({} {}) rotate(-90)\">{}</text>",
        N(16.0),
        N(mid),
        escape(&panel.unit)
    );

    // The strip's rows, each named by its visit in the visit's colour.
    for &i in &strip.0 {
        let (Some(visit), Some(y)) = (chart.visits.get(i), strip.y(i, plot.bottom)) else { continue };
        let (color, _) = visit_style(visit.style);
        let attrs =
            format!("class=\"strip-label\" data-visit=\"{}\" font-size=\"11\" fill=\"{color}\"", escape(&visit.code));
        text(out, LEFT - 6.0, y + 4.0, "end", &attrs, &format!("{} missing", visit.code));
    }
    for series in &panel.series {
        let Some(visit) = chart.visits.get(series.visit) else { continue };
        let lift = strip.y(series.visit, plot.bottom).unwrap_or(plot.bottom + STRIP_GAP);
        draw_series(out, chart, panel, series, visit, minutes, &plot, lift, seen);
    }
    out.push_str("</g>");
}

#[allow(clippy::too_many_arguments)]
fn draw_series(
    out: &mut String,
    chart: &Chart,
    panel: &Panel,
    series: &Series,
    visit: &VisitLine,
    minutes: &Minutes,
    plot: &Plot,
    lift: f64,
    seen: &mut Seen,
) {
    let (color, dash) = visit_style(visit.style);
    let _ = write!(
        out,
        "<g class=\"series\" data-visit=\"{}\" data-analyte=\"{}\" data-baseline=\"{}\" stroke-dasharray=\"{dash}\">",
        Escaped(&visit.code),
        Escaped(&panel.analyte),
        visit.baseline
    );
    for run in runs(series, &chart.timepoints) {
        out.push_str("<polyline class=\"line\" points=\"");
        for (i, &(m, v)) in run.iter().enumerate() {
            let gap = if i == 0 { "" } else { " " };
            let _ = write!(out, "{gap}{},{}", N(minutes.x(m)), N(plot.y(v)));
        }
        let _ = write!(out, "\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>");
    }
    // Markers are drawn solid whatever the line's dashes.
    out.push_str("<g stroke-dasharray=\"none\">");
    for (&minute, &point) in &series.points {
        let (x, y) = (minutes.x(minute), plot.y(point.value()));
        let (kind, fill) = match point {
            Point::Measured(_) => ("measured", color),
            Point::Censored(_) => ("censored", "#FFFFFF"),
        };
        seen.censored |= matches!(point, Point::Censored(_));
        let censored = if kind == "censored" { " (censored, at its bound)" } else { "" };
        // Escaped piece by piece: the words between them need no escaping.
        let title = format_args!(
            "{}, {} at {minute} min: {} {}{censored}",
            Escaped(&visit.code),
            Escaped(&panel.name),
            Escaped(&format_value(point.value())),
            Escaped(&panel.unit)
        );
        let attrs = format_args!("class=\"point {kind}\" data-minute=\"{minute}\"");
        marker(out, panel.shape, (x, y), Paint { fill, stroke: color }, attrs, Some(title));
    }
    // Missing and withdrawn marks sit in the visit's row of the strip under
    // the axis (`lift`), away from every value.
    for minute in series.missing(&chart.timepoints) {
        let x = minutes.x(minute);
        let withdrawn = series.withdrawn.contains(&minute);
        let kind = if withdrawn { "withdrawn" } else { "missing" };
        seen.missing |= !withdrawn;
        seen.withdrawn |= withdrawn;
        let _ = write!(out, "<g class=\"{kind}\" data-minute=\"{minute}\">");
        if withdrawn {
            withdrawn_mark(out, x, lift, color);
        } else {
            cross(out, x, lift, color);
        }
        out.push_str("</g>");
    }
    for &minute in &series.flagged {
        let x = minutes.x(minute);
        let y = match series.points.get(&minute) {
            Some(p) => plot.y(p.value()),
            None if chart.timepoints.contains(&minute) => lift,
            None => continue,
        };
        seen.flagged = true;
        ring(out, x, y, 8.0, FLAG_COLOR, format_args!("class=\"flag\" data-minute=\"{minute}\""));
    }
    out.push_str("</g></g>");
}

/// Draws a legend entry's sample mark centred at (x, y).
type Sample = Box<dyn Fn(&mut String, f64, f64)>;

/// The legend under the panels: the visits (line style, colour, which is
/// the baseline, which have nothing yet), then the marks. Returns the SVG
/// and its height.
fn legend(chart: &Chart, seen: &Seen, top: f64) -> (String, f64) {
    let mut out = String::from("<g class=\"legend\">");
    let mut items: Vec<(String, Sample, String)> = Vec::new();
    for visit in &chart.visits {
        let (color, dash) = visit_style(visit.style);
        let label = match (visit.baseline, visit.received) {
            (true, true) => format!("{}: baseline", visit.title),
            (false, true) => visit.title.clone(),
            (true, false) => format!("{}: baseline, nothing received yet", visit.title),
            (false, false) => format!("{}: nothing received yet", visit.title),
        };
        let received = visit.received;
        let attrs = format!(
            "class=\"legend-visit\" data-visit=\"{}\" data-baseline=\"{}\" data-received=\"{}\"",
            escape(&visit.code),
            visit.baseline,
            received
        );
        let sample: Sample = Box::new(move |out: &mut String, x: f64, y: f64| {
            if received {
                let _ = write!(
                    out,
                    "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>",
                    N(x - 12.0),
                    N(y),
                    N(x + 12.0),
                    N(y)
                );
            }
        });
        items.push((attrs, sample, label));
    }
    for panel in &chart.panels {
        let shape = panel.shape;
        let attrs = format!("class=\"legend-analyte\" data-analyte=\"{}\"", escape(&panel.analyte));
        let sample: Sample = Box::new(move |out: &mut String, x: f64, y: f64| {
            marker(out, shape, (x, y), Paint { fill: INK, stroke: INK }, "", None::<&str>)
        });
        items.push((attrs, sample, panel.name.clone()));
    }
    let marks: [(bool, &str, &str); 4] = [
        (seen.censored, "censored", "hollow: censored (at its bound)"),
        (seen.missing, "missing", "missing"),
        (seen.withdrawn, "withdrawn", "withdrawn by a data manager"),
        (seen.flagged, "flag", "open mismatch"),
    ];
    for (shown, kind, label) in marks {
        if !shown {
            continue;
        }
        let sample: Sample = Box::new(move |out: &mut String, x: f64, y: f64| match kind {
            "censored" => marker(out, Shape::Circle, (x, y), Paint { fill: "#FFFFFF", stroke: INK }, "", None::<&str>),
            "missing" => cross(out, x, y, INK),
            "withdrawn" => withdrawn_mark(out, x, y, INK),
            _ => ring(out, x, y, 7.0, FLAG_COLOR, ""),
        });
        items.push((format!("class=\"legend-mark\" data-mark=\"{kind}\""), sample, label.to_owned()));
    }
    let (mut x, mut y) = (LEFT, top + LEGEND_ROW / 2.0);
    let mut rows = 1.0;
    for (attrs, sample, label) in items {
        let width = 40.0 + CHAR_WIDTH * label.chars().count() as f64;
        if x > LEFT && x + width > WIDTH - RIGHT {
            x = LEFT;
            y += LEGEND_ROW;
            rows += 1.0;
        }
        let _ = write!(out, "<g {attrs}>");
        sample(&mut out, x, y);
        text(&mut out, x + 18.0, y + 4.5, "start", "", &label);
        out.push_str("</g>");
        x += width;
    }
    out.push_str("</g>");
    (out, rows * LEGEND_ROW)
}

/// One participant's change from baseline at one visit.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// Index into [`DeltaChart::participants`].
    pub participant: usize,
    /// Index into [`DeltaChart::visits`].
    pub visit: usize,
    pub value: f64,
}

/// One analyte's Δ AUC mean of every participant.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaPanel {
    pub analyte: String,
    pub name: String,
    pub unit: String,
    pub shape: Shape,
    pub deltas: Vec<Delta>,
}

/// The study-wide chart of Δ AUC mean: participants along x in code order
/// (the only order that says nothing about allocation), one panel per
/// analyte, each follow-up visit in its colour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeltaChart {
    pub participants: Vec<String>,
    /// The follow-up visits drawn, with their styles.
    pub visits: Vec<VisitLine>,
    pub panels: Vec<DeltaPanel>,
}

/// A y axis over the values and 0 (the no-change line is always shown).
fn delta_axis(values: impl Iterator<Item = f64> + Clone) -> YAxis {
    let hi = values.clone().fold(0.0f64, f64::max);
    let lo = values.fold(0.0f64, f64::min);
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return YAxis { min: -1.0, max: 1.0, step: 0.5 };
    }
    let step = nice_step(span / 5.0);
    YAxis { min: (lo / step).floor() * step, max: (hi / step).ceil() * step, step }
}

/// The Δ AUC mean chart as one `<svg>` element; `label` is its accessible name.
pub fn delta_svg(chart: &DeltaChart, label: &str) -> String {
    let count = chart.participants.len().max(1) as f64;
    let slot = (WIDTH - LEFT - RIGHT) / count;
    let x = |p: usize, v: usize| {
        // Visits side by side within a participant's slot.
        let visits = chart.visits.len().max(1) as f64;
        LEFT + slot * (p as f64 + (v as f64 + 1.0) / (visits + 1.0))
    };
    // Codes are written at an angle, so a long list still fits.
    let label_room = 12.0 + 6.0 * chart.participants.iter().map(|c| c.chars().count()).max().unwrap_or(0) as f64;
    let mut body = String::new();
    let mut top = 0.0;
    for panel in &chart.panels {
        let plot = Plot {
            top: top + TITLE_ROOM,
            bottom: top + PANEL_HEIGHT - LABEL_ROOM,
            axis: delta_axis(panel.deltas.iter().map(|d| d.value).filter(|v| v.is_finite())),
        };
        let _ = write!(
            body,
            "<g class=\"delta-panel\" data-analyte=\"{}\" data-unit=\"{}\">",
            escape(&panel.analyte),
            escape(&panel.unit)
        );
        let title = format!("{}: AUC mean minus baseline ({}), {}s", panel.name, panel.unit, panel.shape.name());
        text(&mut body, LEFT, top + 18.0, "start", "class=\"panel-title\" font-weight=\"600\"", &title);
        for tick in plot.axis.ticks() {
            let y = plot.y(tick);
            let zero = tick.abs() < plot.axis.step / 1e6;
            let stroke = if zero { INK } else { GRID };
            let _ = write!(
                body,
                "<line class=\"y-grid\" data-value=\"{}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{stroke}\"/>",
                axis_label(tick),
                N(LEFT),
                N(y),
                N(WIDTH - RIGHT),
                N(y)
            );
            text(&mut body, LEFT - 6.0, y + 4.0, "end", "class=\"y-tick\"", &axis_label(tick));
        }
        let _ = write!(
            body,
            "<path d=\"M{} {} V{}\" fill=\"none\" stroke=\"{INK}\"/>",
            N(LEFT),
            N(plot.top),
            N(plot.bottom)
        );
        for (p, code) in chart.participants.iter().enumerate() {
            let cx = LEFT + slot * (p as f64 + 0.5);
            let _ = write!(
                body,
                "<text class=\"x-tick\" x=\"0\" y=\"0\" font-size=\"11\" text-anchor=\"end\" transform=\"translate({} {}) rotate(-45)\">{}</text>",
                N(cx + 3.0),
                N(plot.bottom + 12.0),
                escape(code)
            );
        }
        for d in &panel.deltas {
            let (Some(code), Some(visit)) = (chart.participants.get(d.participant), chart.visits.get(d.visit)) else {
                continue;
            };
            let (color, _) = visit_style(visit.style);
            // As the AUC table prints it: 12 significant digits, no float noise.
            let value = crate::report::auc::number(Some(d.value));
            let attrs = format!(
                "class=\"delta\" data-participant=\"{}\" data-visit=\"{}\" data-value=\"{value}\"",
                escape(code),
                escape(&visit.code)
            );
            let title = format!("{code} {}: {value} {}", visit.title, panel.unit);
            marker(
                &mut body,
                panel.shape,
                (x(d.participant, d.visit), plot.y(d.value)),
                Paint { fill: color, stroke: color },
                &attrs,
                Some(Escaped(&title)),
            );
        }
        body.push_str("</g>");
        top += PANEL_HEIGHT + label_room.max(LABEL_ROOM) - LABEL_ROOM;
    }
    text(&mut body, (LEFT + WIDTH - RIGHT) / 2.0, top + 6.0, "middle", "class=\"x-title\"", "participants, by code");
    top += 14.0;
    let mut legend = String::from("<g class=\"legend\">");
    let (mut lx, ly) = (LEFT, top + LEGEND_ROW / 2.0);
    for visit in &chart.visits {
        let (color, _) = visit_style(visit.style);
        let attrs = format!("class=\"legend-visit\" data-visit=\"{}\"", escape(&visit.code));
        let _ = write!(legend, "<g {attrs}>");
        marker(&mut legend, Shape::Circle, (lx, ly), Paint { fill: color, stroke: color }, "", None::<&str>);
        text(&mut legend, lx + 10.0, ly + 4.0, "start", "", &visit.title);
        legend.push_str("</g>");
        lx += 30.0 + CHAR_WIDTH * visit.title.chars().count() as f64;
    }
    legend.push_str("</g>");
    let height = top + LEGEND_ROW + 8.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"delta-auc\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         role=\"img\" aria-label=\"{label}\" font-family=\"sans-serif\" font-size=\"13\" fill=\"{INK}\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#FFFFFF\"/>{body}{legend}</svg>",
        w = N(WIDTH),
        h = N(height),
        label = escape(label),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMES: [i32; 7] = [-10, 0, 15, 30, 60, 90, 120];

    fn series(visit: usize, points: &[(i32, Point)], flagged: &[i32]) -> Series {
        Series {
            visit,
            points: points.iter().copied().collect(),
            flagged: flagged.iter().copied().collect(),
            withdrawn: BTreeSet::new(),
        }
    }

    fn visit(code: &str, baseline: bool, received: bool) -> VisitLine {
        VisitLine { code: code.into(), title: code.into(), baseline, received, style: 0 }
    }

    #[test]
    fn coordinates_are_written_as_format_writes_one_decimal() {
        let mut values = vec![0.0, -0.0, 0.05, 0.25, 0.35, 12.25, -12.25, 1.45, -0.04, 999_999.95, 1e6, 1e300, -2.5e-7];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..300_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Chart coordinates, exact halves and quarters, and any bits at all.
            let x = (state % 20_000_000) as f64 / 1000.0 - 5000.0;
            values.extend([x, (x * 4.0).round() / 4.0, (x * 20.0).round() / 20.0, f64::from_bits(state)]);
        }
        for v in values.into_iter().filter(|v| !v.is_nan()) {
            assert_eq!(N(v).to_string(), format!("{v:.1}"), "{v:e}");
        }
    }

    #[test]
    fn the_line_breaks_at_a_missing_minute() {
        let s = series(
            0,
            &[
                (0, Point::Measured(1.0)),
                (15, Point::Measured(2.0)),
                (60, Point::Measured(3.0)),
                (90, Point::Measured(4.0)),
            ],
            &[],
        );
        assert_eq!(runs(&s, &TIMES).len(), 2, "0–15 and 60–90; 30 is missing");
        assert_eq!(s.missing(&TIMES).collect::<Vec<_>>(), [-10, 30, 120]);
    }

    #[test]
    fn the_y_axis_is_round_and_covers_every_visit() {
        let panel = Panel {
            analyte: "c_peptide".into(),
            name: "C-peptide".into(),
            unit: "nmol/L".into(),
            shape: Shape::Circle,
            series: vec![
                series(0, &[(60, Point::Measured(0.98))], &[]),
                series(1, &[(60, Point::Measured(0.07))], &[]),
            ],
        };
        let axis = YAxis::of(&panel);
        assert_eq!((axis.min, axis.max, axis.step), (0.0, 1.0, 0.2));
        assert_eq!(axis.ticks().len(), 6);
        let empty = Panel { series: Vec::new(), ..panel };
        assert_eq!(YAxis::of(&empty).max, 1.0);
    }

    #[test]
    fn the_svg_is_one_element_with_text_escaped_and_visits_in_the_legend() {
        let chart = Chart {
            timepoints: TIMES.to_vec(),
            visits: vec![visit("V0<&>", true, true), visit("V24", false, false)],
            panels: vec![Panel {
                analyte: "c_peptide".into(),
                name: "C-peptide".into(),
                unit: "nmol/L".into(),
                shape: Shape::Circle,
                series: vec![series(0, &[(0, Point::Censored(0.01)), (15, Point::Measured(0.4))], &[15, 30])],
            }],
        };
        let svg = chart_svg(&chart, "U01 <curves>");
        assert!(svg.starts_with("<svg "), "{}", &svg[..40]);
        assert!(svg.contains("V0&lt;&amp;&gt;: baseline"), "{svg}");
        assert!(svg.contains("V24: nothing received yet"), "{svg}");
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let flags = doc.descendants().filter(|n| n.attribute("class") == Some("flag")).count();
        assert_eq!(flags, 2, "the flagged point and the held one at 30");
        let missing = doc.descendants().filter(|n| n.attribute("class") == Some("missing")).count();
        assert_eq!(missing, 5);
        let hollow = doc.descendants().filter(|n| n.attribute("class") == Some("point censored")).count();
        assert_eq!(hollow, 1);
    }
}
