//! `report mismatches --format html` and `report auc --format html`: one
//! self-contained page a data manager opens in a browser or prints on A4.
//!
//! Self-contained: inline CSS, the MMTT curves as inline SVG ([`plot`]), no
//! script, no link or image outside the page. The page is polyglot HTML5
//! (also well-formed XML: every element closed, attributes quoted, only the
//! five XML entities), UTF-8. Every text from data or configuration is
//! escaped here or in [`plot`]; nothing else is written unescaped.
//!
//! Like the other writers these only format: rows come in the store's
//! neutral order (participant code, visit, minute, analyte) and sections
//! follow that order, so nothing groups or orders participants in a way that
//! could reveal allocation. Each participant gets one chart with every visit
//! on shared axes, so baseline and follow-up compare at a glance.
//!
//! [`plot`]: crate::report::plot

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Write};

use crate::report::auc::{AUC_COLUMNS, auc_heading, auc_record};
use crate::report::format::format_value;
use crate::report::mismatches::{
    History, MISSING_RESULT, MismatchTextOptions, ReviewRow, history_entry, mismatch_record,
};
use crate::report::now::Now;
use crate::report::plot::{
    Chart, Delta, DeltaChart, DeltaPanel, Panel, Point, Series, Shape, VisitLine, delta_svg, visit_style_name,
    write_chart_svg,
};
use crate::report::wording::{missing_detail, nothing_received, nothing_received_line, plural, row_state, zoned_time};
use crate::store::{MismatchCode, MismatchReport, ResultRow, Slot, Visit};
use crate::study::auc::AucRow;
use crate::study::config::{BaselineSample, BlqRule, Config, MissingRule};
use crate::study::missing::Absence;
use crate::study::units::KnownAnalyte;

/// What the curves are drawn from, read from the same snapshot as the rows.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// The current accepted results (the store's `current_results`).
    pub results: &'a [ResultRow],
    /// The visits, for their meal starts.
    pub visits: &'a [Visit],
    /// Every decision on each row, oldest first (`--all` shows them all).
    pub history: &'a History,
    /// Where each decided value is now, and the not-done slots per visit.
    pub now: &'a Now,
}

/// `text` for HTML content or a quoted attribute value: the markup
/// characters as entity references, and characters XML does not allow as
/// visible stand-ins (a C0 control as its Unicode control picture, e.g.
/// STX as `␂`; U+FFFE and U+FFFF as U+FFFD), so the page stays well-formed
/// whatever an analyzer sent.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// [`escape`], appended to `out`.
pub fn escape_into(out: &mut String, text: &str) {
    let _ = fmt::Write::write_fmt(out, format_args!("{}", Escaped(text)));
}

/// [`escape`] as a `Display`, to write escaped text with `write!` and no
/// copy of its own: runs that need no escaping are written as they are.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let mut start = 0;
        for (i, c) in text.char_indices() {
            let entity = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                '\t' | '\n' | '\r' => continue,
                c if u32::from(c) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => "",
                _ => continue,
            };
            f.write_str(text.get(start..i).unwrap_or_default())?;
            start = i + c.len_utf8();
            if entity.is_empty() {
                let visible = match c {
                    '\u{FFFE}' | '\u{FFFF}' => '\u{FFFD}',
                    c => char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{FFFD}'),
                };
                fmt::Write::write_char(f, visible)?;
            } else {
                f.write_str(entity)?;
            }
        }
        f.write_str(text.get(start..).unwrap_or_default())
    }
}

/// Words longer than this get break opportunities after their separators.
const LONG_WORD: usize = 12;

/// Where a long name may wrap: after a path, word or extension separator.
fn is_separator(c: char) -> bool {
    matches!(c, '/' | '\\' | '_' | '-' | '.' | ':' | '@' | '|' | '^' | ',' | ';' | '=' | '&' | '+')
}

/// [`Html::spill`]'s threshold.
const SPILL_AT: usize = 1 << 20;

/// A page under construction. Elements are opened and closed through these
/// methods only, with escaped text and attribute values.
struct Html(String);

impl Html {
    fn open(&mut self, tag: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.0.push('<');
        self.0.push_str(tag);
        for (name, value) in attrs {
            self.0.push(' ');
            self.0.push_str(name);
            self.0.push_str("=\"");
            escape_into(&mut self.0, value);
            self.0.push('"');
        }
        self.0.push('>');
        self
    }

    fn close(&mut self, tag: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    /// An element with nothing inside, written `<tag/>`.
    fn empty(&mut self, tag: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.open(tag, attrs);
        self.0.pop();
        self.0.push_str("/>");
        self
    }

    fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.0, text);
        self
    }

    /// Text whose long words (file names, paths, codes) may wrap after a
    /// separator (`<wbr/>`), so a narrow column on A4 shows
    /// `cobas-e411-export-` / `cut-off.astm`, not `cobas-e4` / `11…`; never
    /// inside a number or time. A word with no such place wraps anywhere
    /// only as a last resort (CSS `overflow-wrap`), rather than be cut off.
    fn breakable(&mut self, text: &str) -> &mut Self {
        let mut word = String::new();
        let flush = |h: &mut Html, word: &mut String| {
            if word.chars().count() > LONG_WORD {
                let mut piece = String::new();
                let mut chars = word.chars().peekable();
                let mut before = None;
                while let Some(c) = chars.next() {
                    piece.push(c);
                    // Never inside a number, date or time (`08:45`, `2026-01-20`, `0.66`).
                    let numeric = before.is_some_and(|b: char| b.is_ascii_digit())
                        && chars.peek().is_some_and(char::is_ascii_digit);
                    before = Some(c);
                    if is_separator(c) && chars.peek().is_some() && !numeric {
                        escape_into(&mut h.0, &piece);
                        h.0.push_str("<wbr/>");
                        piece.clear();
                    }
                }
                escape_into(&mut h.0, &piece);
            } else {
                escape_into(&mut h.0, word);
            }
            word.clear();
        };
        for c in text.chars() {
            if c.is_whitespace() {
                flush(self, &mut word);
                escape_into(&mut self.0, c.encode_utf8(&mut [0; 4]));
            } else {
                word.push(c);
            }
        }
        flush(self, &mut word);
        self
    }

    /// `<tag attrs>text</tag>`.
    fn element(&mut self, tag: &str, attrs: &[(&str, &str)], text: &str) -> &mut Self {
        self.open(tag, attrs).text(text).close(tag)
    }

    /// `<tag attrs>text</tag>` with [`Html::breakable`] text.
    fn breakable_element(&mut self, tag: &str, attrs: &[(&str, &str)], text: &str) -> &mut Self {
        self.open(tag, attrs).breakable(text).close(tag)
    }

    fn line(&mut self) -> &mut Self {
        self.0.push('\n');
        self
    }

    fn start(title: &str) -> Html {
        let mut h = Html(String::from("<!DOCTYPE html>\n"));
        h.open("html", &[("xmlns", "http://www.w3.org/1999/xhtml"), ("lang", "en"), ("xml:lang", "en")]).line();
        h.open("head", &[]).line();
        h.empty("meta", &[("charset", "utf-8")]).line();
        h.empty("meta", &[("name", "viewport"), ("content", "width=device-width, initial-scale=1")]).line();
        h.element("title", &[], title).line();
        // Raw: a browser reads <style> as raw text, where an entity would not
        // be decoded (CSS holds no `<` or `&`, so it is well-formed XML too).
        h.open("style", &[]);
        h.0.push_str(CSS);
        h.close("style").line();
        h.close("head").line();
        h.open("body", &[]).line();
        h
    }

    /// Hand what is written so far to `out` once it is large, so a page of
    /// thousands of charts is never held, and copied, whole.
    fn spill(&mut self, out: &mut dyn Write) -> io::Result<()> {
        if self.0.len() >= SPILL_AT {
            out.write_all(self.0.as_bytes())?;
            self.0.clear();
        }
        Ok(())
    }

    fn finish(mut self, out: &mut dyn Write) -> io::Result<()> {
        self.close("body").line().close("html").line();
        out.write_all(self.0.as_bytes())
    }

    /// A table header row.
    fn head_row(&mut self, names: &[&str]) -> &mut Self {
        self.open("thead", &[]).open("tr", &[]);
        for name in names {
            // Long column names (`ln_auc_mean_plus_1`) wrap at their `_`.
            self.breakable_element("th", &[("scope", "col")], name);
        }
        self.close("tr").close("thead").line()
    }
}

/// Light and printable on A4; no fonts or images from outside the page. No
/// `<` or `&` (it is written unescaped). Tables take the page's width and
/// wrap long names where `<wbr/>` allows, a mismatch cell anywhere only when
/// a word has no such place (nothing cut off); charts scale to the width.
const CSS: &str = "
@page { size: A4; margin: 14mm 12mm; }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #111; background: #fff;
  max-width: 80em; margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 1.45em; margin: 0 0 .2em; }
h2 { font-size: 1.15em; margin: 1.8em 0 .4em; padding-bottom: .15em; border-bottom: 1px solid #999; }
h3 { font-size: 1em; margin: 1.2em 0 .3em; }
p.meta { color: #444; margin: 0 0 1em; }
p.nothing { font-weight: 600; margin: .3em 0 1em; }
table { border-collapse: collapse; margin: .4em 0 1em; font-size: .9em; width: calc(100% - 2px); }
table.summary { width: auto; }
th, td { border: 1px solid #bbb; padding: .2em .4em; text-align: left; vertical-align: top;
  overflow-wrap: normal; word-break: normal; hyphens: none; }
td.sample, td.reported, td.detail, td.from, td.resolution { overflow-wrap: anywhere; }
th { background: #eee; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.code, td.id, td.sample { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; }
td.id, td.minute { white-space: nowrap; }
td.detail { min-width: 12em; }
td.from { font-size: .9em; }
td.from span.received, td.state span.effect { color: #444; }
tr.resolved { color: #555; }
tr.baseline td { background: #f4f8fc; }
span.tag { font-size: .8em; border: 1px solid #888; border-radius: 3px; padding: 0 .3em; margin-left: .3em; }
figure { margin: .6em 0 1em; }
figure svg { display: block; width: 100%; max-width: 720px; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .88em; color: #333; max-width: 60em; }
nav ol { columns: 2 22em; margin: .3em 0; padding-left: 1.4em; }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; }
dl.settings dt { font-weight: 600; }
dl.settings dd { margin: 0; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 9pt; }
  table { font-size: 7.5pt; }
  th, td { padding: .15em .3em; }
  td.detail { min-width: 9em; }
  nav { display: none; }
  h2, h3 { break-after: avoid; }
  figure, tr, div.head { break-inside: avoid; }
  figure svg { max-width: 100%; border: none; }
}
";

/// The configured name of a visit, e.g. `V4 (2 years)`.
fn visit_title(config: &Config, visit: &str) -> String {
    match config.visits.iter().find(|v| v.code == visit) {
        Some(v) if !v.name.is_empty() => format!("{visit} ({})", v.name),
        _ => visit.to_owned(),
    }
}

fn analyte_name(analyte: &str) -> String {
    match KnownAnalyte::from_name(analyte) {
        Some(KnownAnalyte::CPeptide) => "C-peptide".to_owned(),
        Some(KnownAnalyte::Glucose) => "glucose".to_owned(),
        None => analyte.to_owned(),
    }
}

fn minute_list(minutes: &[i32]) -> String {
    minutes.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
}

/// The current results, by participant and visit.
fn results_by_visit(results: &[ResultRow]) -> BTreeMap<(&str, &str), Vec<&ResultRow>> {
    let mut by_visit: BTreeMap<(&str, &str), Vec<&ResultRow>> = BTreeMap::new();
    for r in results {
        by_visit.entry((r.slot.participant.as_str(), r.slot.visit.as_str())).or_default().push(r);
    }
    by_visit
}

/// A participant's visits for the chart: those with a meal start, with
/// results, or named by the report's rows; in `[[visits]]` order, then
/// unconfigured visits by code.
fn chart_visits<'a>(
    config: &Config,
    participant: &str,
    with_meal: &BTreeMap<&'a str, Vec<&'a str>>,
    results: &BTreeMap<(&'a str, &'a str), Vec<&'a ResultRow>>,
    named: impl IntoIterator<Item = &'a str>,
) -> Vec<&'a str> {
    let mut codes: Vec<&'a str> = with_meal
        .get(participant)
        .into_iter()
        .flatten()
        .copied()
        .chain(results.range((participant, "")..).take_while(|((p, _), _)| *p == participant).map(|((_, v), _)| *v))
        .chain(named)
        .collect();
    codes.sort_by_key(|v| (config.visit_index(v).unwrap_or(usize::MAX), *v));
    codes.dedup();
    codes
}

/// The visits with a meal start, by participant: each chart looks its own
/// up instead of scanning the study's.
fn visits_with_meal(visits: &[Visit]) -> BTreeMap<&str, Vec<&str>> {
    let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for v in visits.iter().filter(|v| v.meal_start.is_some()) {
        by.entry(v.participant.as_str()).or_default().push(v.visit.as_str());
    }
    by
}

/// The configured analytes in panel order: C-peptide, glucose, then the
/// others by name; each with its marker shape.
fn panel_analytes(config: &Config) -> Vec<(&str, &str, Shape)> {
    let mut analytes: Vec<(&str, &str, Shape)> = config
        .analytes
        .iter()
        .map(|(name, a)| {
            let shape = match KnownAnalyte::from_name(name) {
                Some(KnownAnalyte::CPeptide) => Shape::Circle,
                Some(KnownAnalyte::Glucose) => Shape::Square,
                None => Shape::Triangle,
            };
            (name.as_str(), a.unit.as_str(), shape)
        })
        .collect();
    let rank = |s: Shape| match s {
        Shape::Circle => 0,
        Shape::Square => 1,
        Shape::Triangle => 2,
    };
    analytes.sort_by_key(|(name, _, shape)| (rank(*shape), *name));
    analytes
}

/// What the charts mark besides the values, from the same snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Marks<'a> {
    /// Slots with an open mismatch: a flagged value, or a held-back one.
    pub flagged: &'a BTreeSet<Slot>,
    /// Slots whose value a data manager withdrew (rejected or moved away).
    pub withdrawn: &'a BTreeSet<Slot>,
}

/// One participant's chart: every visit in `visits` on shared axes, a panel
/// per configured analyte. `None` when no visit has a result: then there is
/// nothing to draw, and the page says so instead of an empty chart.
pub fn participant_chart(
    config: &Config,
    participant: &str,
    visits: &[&str],
    results: &BTreeMap<(&str, &str), Vec<&ResultRow>>,
    marks: &Marks<'_>,
) -> Option<Chart> {
    let baseline = config.baseline_visit().map(|v| v.code.as_str());
    // This participant's visits once; then a search, not `get`: the map's
    // keys borrow the snapshot, `v` does not.
    let mine: Vec<(&str, &[&ResultRow])> = results
        .range((participant, "")..)
        .take_while(|((p, _), _)| *p == participant)
        .map(|((_, v), r)| (*v, r.as_slice()))
        .collect();
    let of_visit = |v: &str| mine.iter().find(|(x, _)| *x == v).map(|(_, r)| *r).unwrap_or_default();
    let mut unconfigured = config.visits.len();
    let lines: Vec<VisitLine> = visits
        .iter()
        .map(|v| VisitLine {
            code: (*v).to_owned(),
            title: visit_title(config, v),
            baseline: baseline == Some(*v),
            received: !of_visit(v).is_empty(),
            style: config.visit_index(v).unwrap_or_else(|| {
                unconfigured += 1;
                unconfigured - 1
            }),
        })
        .collect();
    if !lines.iter().any(|l| l.received) {
        return None;
    }
    // Slots sort by participant and visit first: read only this visit's.
    let minutes = |slots: &BTreeSet<Slot>, visit: &str, analyte: &str| -> BTreeSet<i32> {
        slots
            .range(Slot::new(participant, visit, i64::MIN, "")..)
            .take_while(|s| s.participant == participant && s.visit == visit)
            .filter(|s| s.analyte == analyte)
            .filter_map(|s| i32::try_from(s.minute).ok())
            .collect()
    };
    let panels = panel_analytes(config)
        .into_iter()
        .map(|(analyte, unit, shape)| {
            let series = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.received)
                .map(|(i, l)| {
                    let mut s = Series {
                        visit: i,
                        flagged: minutes(marks.flagged, &l.code, analyte),
                        withdrawn: minutes(marks.withdrawn, &l.code, analyte),
                        ..Series::default()
                    };
                    for r in of_visit(&l.code).iter().filter(|r| r.slot.analyte == analyte) {
                        let Ok(minute) = i32::try_from(r.slot.minute) else { continue };
                        let censored = r.blq || r.comparator.is_some();
                        s.points
                            .insert(minute, if censored { Point::Censored(r.value) } else { Point::Measured(r.value) });
                    }
                    s
                })
                .collect();
            Panel { analyte: analyte.to_owned(), name: analyte_name(analyte), unit: unit.to_owned(), shape, series }
        })
        .collect();
    Some(Chart { timepoints: config.mmtt.timepoints.clone(), visits: lines, panels })
}

/// The chart as a `<figure>`: the SVG and a caption that says in words what
/// it shows (for a reader who cannot see the image, and for print).
fn write_chart(h: &mut Html, participant: &str, chart: &Chart) {
    h.open("figure", &[("class", "curve"), ("data-participant", participant)]).line();
    let label = format!("MMTT curves of participant {participant}, every visit on shared axes");
    write_chart_svg(&mut h.0, chart, &label);
    h.line().open("figcaption", &[]);
    let panels: Vec<String> =
        chart.panels.iter().map(|p| format!("{} ({}, {}s)", p.name, p.unit, p.shape.name())).collect();
    let visits: Vec<String> = chart
        .visits
        .iter()
        .filter(|v| v.received)
        .map(|v| {
            let base = if v.baseline { ", the baseline visit" } else { "" };
            format!("{} {}{base}", v.title, visit_style_name(v.style))
        })
        .collect();
    h.text(&format!(
        "{} against minutes after meal start, every visit on the same axes (one y scale per analyte): {}.",
        panels.join(" and "),
        visits.join("; ")
    ));
    for v in chart.visits.iter().filter(|v| !v.received) {
        h.text(" ");
        h.element(
            "span",
            &[("class", "nothing"), ("data-visit", &v.code)],
            &format!("{}: nothing received yet.", v.title),
        );
    }
    for panel in &chart.panels {
        for series in &panel.series {
            let Some(visit) = chart.visits.get(series.visit) else { continue };
            let missing: Vec<i32> =
                series.missing(&chart.timepoints).filter(|m| !series.withdrawn.contains(m)).collect();
            let censored: Vec<i32> =
                series.points.iter().filter(|(_, p)| matches!(p, Point::Censored(_))).map(|(m, _)| *m).collect();
            let withdrawn: Vec<i32> = series.withdrawn.iter().copied().collect();
            let flagged: Vec<i32> = series.flagged.iter().copied().collect();
            for (class, what, minutes) in [
                ("missing", "missing", missing),
                ("censored", "censored", censored),
                ("withdrawn", "withdrawn by a data manager", withdrawn),
                ("flagged", "open mismatch", flagged),
            ] {
                if minutes.is_empty() {
                    continue;
                }
                let list = minutes.iter().map(i32::to_string).collect::<Vec<_>>().join(" ");
                h.text(" ");
                h.element(
                    "span",
                    &[
                        ("class", class),
                        ("data-visit", &visit.code),
                        ("data-series", &panel.name),
                        ("data-minutes", &list),
                    ],
                    &format!("{} {} {what} at {} min.", visit.code, panel.name, minute_list(&minutes)),
                );
            }
        }
    }
    h.close("figcaption").line().close("figure").line();
}

/// The chart of a participant, or one line saying there is nothing to draw.
fn write_participant_chart(h: &mut Html, chart: Option<Chart>, participant: &str) {
    match chart {
        Some(chart) => write_chart(h, participant, &chart),
        None => {
            h.element("p", &[("class", "nothing")], "No results received yet for any visit: no curve to draw.").line();
        }
    }
}

/// One visit's MMTT curves against the baseline visit's, for the console's
/// page of a mismatch: the `<figure>` (SVG and caption, no style attribute,
/// no script), or `None` when neither visit has a result to draw.
pub fn visit_curves_figure(
    config: &Config,
    results: &[ResultRow],
    marks: &Marks<'_>,
    participant: &str,
    visit: &str,
) -> Option<String> {
    let by_visit = results_by_visit(results);
    let mut visits: Vec<&str> = config.baseline_visit().map(|v| v.code.as_str()).into_iter().collect();
    if !visits.contains(&visit) {
        visits.push(visit);
    }
    visits.sort_by_key(|v| (config.visit_index(v).unwrap_or(usize::MAX), *v));
    let chart = participant_chart(config, participant, &visits, &by_visit, marks)?;
    let mut h = Html(String::new());
    write_chart(&mut h, participant, &chart);
    Some(h.0)
}

/// A stored mismatch that names its whole slot and is still open flags that
/// point on the curve.
pub fn flagged_slots<'a>(stored: impl IntoIterator<Item = &'a MismatchReport>) -> BTreeSet<Slot> {
    stored.into_iter().filter(|r| r.mismatch.resolution.is_none()).filter_map(|r| r.mismatch.slot()).collect()
}

/// Rows of one participant and visit (or of none), in the order given.
struct Group<'r> {
    participant: Option<&'r str>,
    visit: Option<&'r str>,
    rows: Vec<&'r ReviewRow<'r>>,
}

fn groups<'r>(rows: &'r [ReviewRow<'r>]) -> Vec<Group<'r>> {
    let mut groups: Vec<Group<'r>> = Vec::new();
    for row in rows {
        let key = (row.participant(), row.visit());
        match groups.last_mut() {
            Some(g) if (g.participant, g.visit) == key => g.rows.push(row),
            _ => groups.push(Group { participant: key.0, visit: key.1, rows: vec![row] }),
        }
    }
    groups
}

/// The number of scheduled slots of a visit: every minute, every analyte.
fn scheduled_slots(config: &Config) -> usize {
    config.mmtt.timepoints.len() * config.analytes.len()
}

/// The mismatch review page: a summary by code, then rows without a
/// participant, then one section per participant with one chart of all its
/// visits and, per visit, its meal start and a table of its rows (or one
/// line when nothing was received yet).
///
/// `rows` in report order ([`crate::report::review_rows`]); `snapshot` from
/// the same read. With `include_resolved`, resolved rows show their decision.
pub fn write_mismatches_html(
    out: &mut dyn Write,
    rows: &[ReviewRow<'_>],
    snapshot: Snapshot<'_>,
    config: &Config,
    options: &MismatchTextOptions<'_>,
) -> io::Result<()> {
    let zone = config.study.timezone.as_str();
    let scope = if options.include_resolved { "open and resolved" } else { "open" };
    let title = format!("Mismatches ({scope}) for study {}", options.study);
    let mut h = Html::start(&title);
    h.element("h1", &[], &title).line();
    let open = rows.iter().filter(|r| r.is_open()).count();
    let count = if options.include_resolved {
        format!("{}: {open} open, {} resolved", plural(rows.len(), "mismatch", "mismatches"), rows.len() - open)
    } else {
        plural(open, "open mismatch", "open mismatches")
    };
    h.element(
        "p",
        &[("class", "meta")],
        &format!(
            "As of {}. {count}. Every time on this page is in the study's time zone, {zone}.",
            zoned_time(options.generated_at, zone)
        ),
    )
    .line();
    for lock in options.locks {
        h.element("p", &[("class", "lock")], &crate::report::mismatches::lock_line(lock, zone)).line();
    }

    write_summary(&mut h, rows, options.include_resolved);
    let groups = groups(rows);
    let by_participant: Vec<&[Group<'_>]> = groups.chunk_by(|a, b| a.participant == b.participant).collect();
    if by_participant.len() > 1 {
        h.open("nav", &[]).element("h2", &[], "Sections").open("ol", &[]);
        for (i, block) in by_participant.iter().enumerate() {
            let Some(first) = block.first() else { continue };
            let name = match first.participant {
                Some(p) => format!("Participant {p}"),
                None => "Not matched to a participant".to_owned(),
            };
            let n: usize = block.iter().map(|g| g.rows.len()).sum();
            h.open("li", &[]).element("a", &[("href", &format!("#p{}", i + 1))], &name);
            h.text(&format!(" ({})", plural(n, "row", "rows"))).close("li");
        }
        h.close("ol").close("nav").line();
    }

    let flagged = flagged_slots(rows.iter().filter_map(|row| match row {
        ReviewRow::Stored(r) => Some(*r),
        ReviewRow::Missing(_) => None,
    }));
    let withdrawn: BTreeSet<Slot> = rows
        .iter()
        .filter_map(|row| match row {
            ReviewRow::Missing(m) if m.absence == Absence::Withdrawn => Some(m.slot()),
            _ => None,
        })
        .collect();
    let marks = Marks { flagged: &flagged, withdrawn: &withdrawn };
    let results = results_by_visit(snapshot.results);
    let with_meal = visits_with_meal(snapshot.visits);
    let table =
        Table { include_resolved: options.include_resolved, zone, history: snapshot.history, now: snapshot.now };
    // Each visit's meal start, looked up per group (the first row of a visit, as a search would find).
    let mut meal_starts: BTreeMap<(&str, &str), Option<crate::local_time::LocalTime>> = BTreeMap::new();
    for v in snapshot.visits {
        meal_starts.entry((v.participant.as_str(), v.visit.as_str())).or_insert(v.meal_start);
    }
    for (i, block) in by_participant.iter().enumerate() {
        let id = format!("p{}", i + 1);
        let Some(participant) = block.first().and_then(|g| g.participant) else {
            // Rows without a participant: no chart. The first section takes
            // the id the contents link to; ids stay unique.
            for (j, g) in block.iter().enumerate() {
                let id = if j == 0 { id.clone() } else { format!("{id}-{j}") };
                h.open("section", &[("id", &id), ("class", "group")]).line();
                h.element("h2", &[], "Not matched to a participant").line();
                write_mismatch_table(&mut h, &g.rows, &table);
                h.close("section").line();
            }
            continue;
        };
        h.open("section", &[("id", &id), ("class", "participant"), ("data-participant", participant)]).line();
        h.element("h2", &[], &format!("Participant {participant}")).line();
        let visits = chart_visits(config, participant, &with_meal, &results, block.iter().filter_map(|g| g.visit));
        write_participant_chart(&mut h, participant_chart(config, participant, &visits, &results, &marks), participant);
        for g in block.iter() {
            let mut attrs = vec![("class", "group"), ("data-participant", participant)];
            if let Some(v) = g.visit {
                attrs.push(("data-visit", v));
            }
            h.open("section", &attrs).line();
            h.open("div", &[("class", "head")]).line();
            let heading = match g.visit {
                Some(v) => format!("Visit {}", visit_title(config, v)),
                None => "Visit not known".to_owned(),
            };
            h.element("h3", &[], &heading).line();
            if let Some(v) = g.visit {
                let meal = meal_starts.get(&(participant, v)).copied().flatten();
                let meal = match meal {
                    Some(t) => format!("Meal start {} {zone}.", t.display_minutes()),
                    None => "No meal start recorded for this visit.".to_owned(),
                };
                h.element("p", &[("class", "meal")], &meal).line();
            }
            h.close("div").line();
            let slots = scheduled_slots(config);
            let nothing = g.visit.and_then(|v| {
                nothing_received(&g.rows, slots, snapshot.now.not_done_in(participant, v)).map(|n| (v, n))
            });
            match nothing {
                Some((v, n)) => {
                    let what = match (n.open, n.not_done) {
                        (_, 0) => format!(" ({MISSING_RESULT} for every minute and analyte)"),
                        (0, _) => String::new(),
                        _ => format!(" ({MISSING_RESULT} for every open minute and analyte)"),
                    };
                    let line = format!("{}{what}.", nothing_received_line(v, n));
                    let attrs = [
                        ("class", "nothing"),
                        ("data-slots", &slots.to_string()),
                        ("data-not-done", &n.not_done.to_string()),
                    ];
                    h.element("p", &attrs, &line).line();
                    // With `--all`, the slots marked not done, with their reasons.
                    let marked: Vec<&ReviewRow<'_>> = g.rows.iter().copied().filter(|r| !r.is_open()).collect();
                    if !marked.is_empty() {
                        write_mismatch_table(&mut h, &marked, &table);
                    }
                }
                None => write_mismatch_table(&mut h, &g.rows, &table),
            }
            h.close("section").line();
        }
        h.close("section").line();
        h.spill(out)?;
    }
    h.finish(out)
}

/// Counts by code, in the SPEC §6 order.
fn write_summary(h: &mut Html, rows: &[ReviewRow<'_>], include_resolved: bool) {
    h.open("section", &[("id", "summary")]).element("h2", &[], "Summary").line();
    if rows.is_empty() {
        let none = if include_resolved { "No mismatches." } else { "No open mismatches." };
        h.element("p", &[], none).close("section").line();
        return;
    }
    let codes = MismatchCode::ALL.iter().map(|c| c.as_str()).chain([MISSING_RESULT]);
    h.open("table", &[("class", "summary")]);
    if include_resolved {
        h.head_row(&["code", "open", "resolved", "total"]);
    } else {
        h.head_row(&["code", "open"]);
    }
    h.open("tbody", &[]);
    for code in codes {
        let of_code: Vec<&ReviewRow<'_>> = rows.iter().filter(|r| r.code() == code).collect();
        if of_code.is_empty() {
            continue;
        }
        let open = of_code.iter().filter(|r| r.is_open()).count();
        h.open("tr", &[("data-code", code)]).element("td", &[("class", "code")], code);
        h.element("td", &[("class", "num")], &open.to_string());
        if include_resolved {
            h.element("td", &[("class", "num")], &(of_code.len() - open).to_string());
            h.element("td", &[("class", "num")], &of_code.len().to_string());
        }
        h.close("tr").line();
    }
    h.close("tbody").close("table").close("section").line();
}

/// Column classes of the plain-text cells, in order.
const MISMATCH_CLASSES: [&str; 7] = ["id", "code", "sample", "minute", "analyte", "reported", "detail"];

/// How a mismatch table is written.
struct Table<'a> {
    include_resolved: bool,
    zone: &'a str,
    history: &'a History,
    now: &'a Now,
}

/// Nine columns (ten with `--all`), so the table fits an A4 page: where it
/// came from (source, instrument and test, received time) shares one cell,
/// and so do the state and what the value is now.
fn write_mismatch_table(h: &mut Html, rows: &[&ReviewRow<'_>], t: &Table<'_>) {
    let (include_resolved, zone, history) = (t.include_resolved, t.zone, t.history);
    let from = format!("from (received, {zone})");
    let mut names: Vec<&str> = vec!["id", "code", "sample", "minute", "analyte", "reported", "detail", &from, "state"];
    if include_resolved {
        names.push("resolution");
    }
    h.open("table", &[("class", "mismatches")]).line().head_row(&names).open("tbody", &[]).line();
    for row in rows {
        // One source of the fields for CSV, text and HTML.
        let [id, code, sample, _, _, minute, analyte, instrument, test, value, unit, detail, source, _, state] =
            mismatch_record(row);
        let received = match row {
            ReviewRow::Stored(r) => r.provenance.received_at.map(|t| zoned_time(t, zone)).unwrap_or_default(),
            ReviewRow::Missing(_) => String::new(),
        };
        let reported = [value, unit].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        let instrument = [instrument, test].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" / ");
        // A missing result's meal start as every time on the page: local, zone named.
        let detail = match row {
            ReviewRow::Missing(m) => missing_detail(m, zone),
            ReviewRow::Stored(_) => detail,
        };
        let cells = [id, code.clone(), sample, minute, analyte, reported, detail];
        h.open("tr", &[("class", &state), ("data-code", &code)]);
        for (class, text) in MISMATCH_CLASSES.iter().zip(cells) {
            let class = if matches!(*class, "id" | "minute") { format!("{class} num") } else { (*class).to_owned() };
            h.breakable_element("td", &[("class", &class)], &text);
        }
        h.open("td", &[("class", "from")]);
        let mut first = true;
        for (class, text) in [("source", source), ("instrument", instrument), ("received", received)] {
            if text.is_empty() {
                continue;
            }
            if !first {
                h.empty("br", &[]);
            }
            first = false;
            h.breakable_element("span", &[("class", class)], &text);
        }
        h.close("td");
        h.open("td", &[("class", "state")]).element("span", &[("class", "state")], &state);
        h.empty("br", &[]).element("span", &[("class", "effect")], &row_state(row, t.now)).close("td");
        if include_resolved {
            h.open("td", &[("class", "resolution")]);
            for (i, line) in resolution_lines(row, zone, history).iter().enumerate() {
                if i > 0 {
                    h.empty("br", &[]);
                }
                h.breakable_element("span", &[("class", "decision")], line);
            }
            h.close("td");
        }
        h.close("tr").line();
    }
    h.close("tbody").close("table").line();
}

/// Every decision on the row, oldest first, e.g. `assign by dm.anna (Anna Data, data-manager) at
/// 2026-03-02 10:00:00 Europe/Stockholm, assigned to U02/V1/90: reason`.
fn resolution_lines(row: &ReviewRow<'_>, zone: &str, history: &History) -> Vec<String> {
    if let Some(entries) = row.id().and_then(|id| history.get(&id)) {
        return entries.iter().map(|e| history_entry(e, Some(zone), &history.signers)).collect();
    }
    let who = |name: &str| history.signers.who(name);
    match row {
        ReviewRow::Stored(r) => {
            r.mismatch.resolution.iter().map(|res| history_entry(res, Some(zone), &history.signers)).collect()
        }
        ReviewRow::Missing(m) => m
            .not_done
            .iter()
            .map(|mark| format!("not done by {} at {}: {}", who(&mark.by), zoned_time(mark.at, zone), mark.reason))
            .collect(),
    }
}

/// The AUC page: the settings the numbers depend on, then per participant
/// (code order) the SPEC §5 AUC table and one chart of all its visits.
///
/// `rows` from [`crate::study::auc::compute`]; `marks` the slots with an
/// open mismatch and those withdrawn, so the chart shows the current state.
pub fn write_auc_html(
    out: &mut dyn Write,
    rows: &[AucRow],
    snapshot: Snapshot<'_>,
    marks: Marks<'_>,
    config: &Config,
    generated_at: jiff::Timestamp,
) -> io::Result<()> {
    let zone = config.study.timezone.as_str();
    let title = format!("MMTT AUC for study {}", config.study.id);
    let mut h = Html::start(&title);
    h.element("h1", &[], &title).line();
    let count = match rows.len() {
        0 => "No AUC rows".to_owned(),
        n => plural(n, "AUC row", "AUC rows"),
    };
    h.element("p", &[("class", "meta")], &format!("As of {}. {count}.", zoned_time(generated_at, zone))).line();
    write_settings(&mut h, config);
    write_delta_chart(&mut h, config, rows);

    let results = results_by_visit(snapshot.results);
    let with_meal = visits_with_meal(snapshot.visits);
    let baseline = config.baseline_visit().map(|v| v.code.as_str());
    for of_participant in rows.chunk_by(|a, b| a.participant == b.participant) {
        let Some(first) = of_participant.first() else { continue };
        let participant = first.participant.as_str();
        h.open("section", &[("class", "participant"), ("data-participant", participant)]).line();
        h.element("h2", &[], &format!("Participant {participant}")).line();
        write_auc_table(&mut h, of_participant, config, baseline);
        let named = of_participant.iter().map(|r| r.visit.as_str());
        let visits = chart_visits(config, participant, &with_meal, &results, named);
        write_participant_chart(&mut h, participant_chart(config, participant, &visits, &results, &marks), participant);
        h.close("section").line();
        h.spill(out)?;
    }
    if rows.is_empty() {
        h.element("p", &[], "No current results: there is nothing to compute an AUC from.").line();
    }
    h.finish(out)
}

/// Δ AUC mean of every participant, from the rows (participant code order).
/// `None` when no row has one (no baseline visit, or no pair of AUCs yet).
pub fn delta_chart(config: &Config, rows: &[AucRow]) -> Option<DeltaChart> {
    let with_delta: Vec<&AucRow> = rows.iter().filter(|r| r.delta_auc_mean.is_some()).collect();
    if with_delta.is_empty() {
        return None;
    }
    // Every participant with an AUC row, so one without a change yet is
    // seen as a gap, not left out.
    let mut participants: Vec<String> = rows.iter().map(|r| r.participant.clone()).collect();
    participants.sort();
    participants.dedup();
    let mut codes: Vec<&str> = with_delta.iter().map(|r| r.visit.as_str()).collect();
    codes.sort_by_key(|v| (config.visit_index(v).unwrap_or(usize::MAX), *v));
    codes.dedup();
    let mut unconfigured = config.visits.len();
    let visits: Vec<VisitLine> = codes
        .iter()
        .map(|v| VisitLine {
            code: (*v).to_owned(),
            title: visit_title(config, v),
            baseline: false,
            received: true,
            style: config.visit_index(v).unwrap_or_else(|| {
                unconfigured += 1;
                unconfigured - 1
            }),
        })
        .collect();
    let panels = panel_analytes(config)
        .into_iter()
        .map(|(analyte, unit, shape)| {
            let deltas = with_delta
                .iter()
                .filter(|r| r.analyte == analyte)
                .filter_map(|r| {
                    Some(Delta {
                        participant: participants.iter().position(|p| *p == r.participant)?,
                        visit: codes.iter().position(|v| *v == r.visit)?,
                        value: r.delta_auc_mean?,
                    })
                })
                .collect();
            DeltaPanel {
                analyte: analyte.to_owned(),
                name: analyte_name(analyte),
                unit: unit.to_owned(),
                shape,
                deltas,
            }
        })
        .collect();
    Some(DeltaChart { participants, visits, panels })
}

/// The study-wide chart of Δ AUC mean, with a caption saying what it shows.
fn write_delta_chart(h: &mut Html, config: &Config, rows: &[AucRow]) {
    let Some(chart) = delta_chart(config, rows) else { return };
    h.open("section", &[("id", "delta-auc")]).element("h2", &[], "Change in AUC mean from baseline").line();
    h.open("figure", &[("class", "delta")]).line();
    h.0.push_str(&delta_svg(&chart, "Change in AUC mean from baseline of every participant, by participant code"));
    let visits: Vec<String> = chart
        .visits
        .iter()
        .map(|v| format!("{} ({})", v.title, visit_style_name(v.style).replace(" line", "")))
        .collect();
    let caption = format!(
        "delta_auc_mean of every participant, in participant code order: a visit's AUC mean minus the baseline \
         visit's, one panel per analyte, 0 = no change. Visits: {}.",
        visits.join(", ")
    );
    h.line().element("figcaption", &[], &caption).line().close("figure").line().close("section").line();
}

fn write_auc_table(h: &mut Html, rows: &[AucRow], config: &Config, baseline: Option<&str>) {
    // The SPEC §5 columns, with the unit after the analyte.
    let (names, numbers) = AUC_COLUMNS.split_at(3);
    let head: Vec<String> = names.iter().chain(&["unit"]).chain(numbers).map(|c| auc_heading(c)).collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    h.open("table", &[("class", "auc")]).line().head_row(&head).open("tbody", &[]).line();
    for row in rows {
        let is_baseline = baseline == Some(row.visit.as_str());
        let unit = config.analytes.get(&row.analyte).map(|a| a.unit.as_str()).unwrap_or_default();
        let [participant, visit, analyte, auc, auc_mean, ln, points, complete, _, delta] = auc_record(row);
        h.open("tr", if is_baseline { &[("class", "baseline")][..] } else { &[] });
        h.element("td", &[("class", "participant")], &participant);
        h.open("td", &[("class", "visit")]).text(&visit);
        if is_baseline {
            h.element("span", &[("class", "tag")], "baseline");
        }
        h.close("td");
        h.element("td", &[("class", "analyte")], &analyte);
        h.element("td", &[("class", "unit")], unit);
        for (class, value) in [("auc", auc), ("auc_mean", auc_mean), ("ln_auc_mean_plus_1", ln), ("points", points)] {
            h.element("td", &[("class", &format!("{class} num"))], &value);
        }
        let completeness = match (complete == "true", row.interpolated()) {
            (true, _) => "yes",
            (false, true) => "no: interpolated",
            (false, false) => "no",
        };
        h.element("td", &[("class", "complete")], completeness);
        h.element("td", &[("class", "missing_minutes")], &minute_list(&row.missing_minutes));
        h.element("td", &[("class", "delta_auc_mean num")], &delta);
        h.close("tr").line();
    }
    h.close("tbody").close("table").line();
}

/// The `[mmtt]` settings and baseline visit that the numbers depend on.
fn write_settings(h: &mut Html, config: &Config) {
    let m = &config.mmtt;
    let span = i64::from(m.auc_to) - i64::from(m.auc_from);
    let range = format!(
        "minutes {} to {}: linear trapezoid on the nominal minutes; auc in unit·min, auc_mean = auc / {span} min",
        m.auc_from, m.auc_to
    );
    let zero = match m.baseline {
        BaselineSample::Zero => "zero: the 0-min sample".to_owned(),
        BaselineSample::Mean => {
            "mean: the mean of the −10 and 0 min samples (either missing makes minute 0 missing)".to_owned()
        }
    };
    let rule = match m.blq {
        BlqRule::HalfLloq => "half_lloq: a BLQ value counts as half the LLOQ",
        BlqRule::Lloq => "lloq: a BLQ value counts as the LLOQ",
        BlqRule::Zero => "zero: a BLQ value counts as 0",
    };
    let lloqs: Vec<String> = config
        .analytes
        .iter()
        .map(|(name, a)| match a.lloq {
            Some(l) => format!("{name} LLOQ {} {}", format_value(l), a.unit),
            None => format!("{name} no LLOQ (its BLQ values count as missing)"),
        })
        .collect();
    let blq =
        format!("{rule} ({}); other censored values (< above the LLOQ, any >) count as missing", lloqs.join("; "));
    let missing = match m.missing {
        MissingRule::None => "none: a missing point gives no AUC",
        MissingRule::Interpolate => {
            "interpolate: a missing interior point is filled on the line by time between its measured neighbours; \
             a missing first or last point gives no AUC"
        }
    };
    let base = match config.baseline_visit() {
        Some(v) => format!(
            "{}: delta_auc_mean is a visit's auc_mean minus this visit's, for the same participant and analyte",
            visit_title(config, &v.code)
        ),
        None => "none configured: no delta_auc_mean".to_owned(),
    };
    h.open("section", &[("id", "settings")]).element("h2", &[], "Settings").line();
    h.open("dl", &[("class", "settings")]).line();
    for (key, value) in [
        ("mmtt.auc_from, auc_to", range),
        ("mmtt.baseline", zero),
        ("mmtt.blq", blq),
        ("mmtt.missing", missing.to_owned()),
        ("baseline visit", base),
    ] {
        h.element("dt", &[], key).element("dd", &[], &value).line();
    }
    h.close("dl").close("section").line();
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::report::plot::FLAG_COLOR;
    use crate::report::review_rows;
    use crate::report::test_rows::{accepted, decided};
    use crate::store::{
        MismatchId, MismatchReport, MismatchRow, Provenance, ReceiptId, ResolutionAction, ResolutionRow,
    };
    use crate::study::missing::MissingResult;
    use crate::value::Comparator;

    fn config() -> Config {
        Config::from_toml(include_str!("../../config/labfeed.example.toml"), Path::new("test.toml")).unwrap()
    }

    fn at() -> jiff::Timestamp {
        "2026-03-02T09:00:00Z".parse().unwrap()
    }

    fn stored(id: i64, code: MismatchCode, slot: Option<(&str, i64, &str)>, detail: &str) -> MismatchReport {
        MismatchReport {
            mismatch: MismatchRow {
                id: MismatchId(id),
                code,
                holds: code.holds_by_default(),
                observation_id: None,
                message_id: None,
                receipt_id: ReceiptId(1),
                participant: slot.map(|s| s.0.to_owned()),
                visit: slot.map(|_| "V0".to_owned()),
                minute: slot.map(|s| s.1),
                analyte: slot.map(|s| s.2.to_owned()),
                detail: detail.into(),
                created_at: at(),
                resolution: None,
            },
            provenance: Provenance { sample_id: Some("S<1>".into()), ..Provenance::default() },
        }
    }

    fn missing(participant: &str, visit: &str, minute: i32, analyte: &str) -> MissingResult {
        MissingResult {
            participant: participant.into(),
            visit: visit.into(),
            minute,
            analyte: analyte.into(),
            meal_start: "2026-03-02T08:30".parse().unwrap(),
            absence: Absence::NotReceived,
            detail: format!("no accepted {analyte} result at minute {minute}"),
        }
    }

    fn result(participant: &str, visit: &str, minute: i64, analyte: &str, value: f64) -> ResultRow {
        accepted(Slot::new(participant, visit, minute, analyte), 1, value, "ingest", at())
    }

    /// Every scheduled result of a visit, C-peptide scaled by `scale`.
    fn full_visit(participant: &str, visit: &str, scale: f64) -> Vec<ResultRow> {
        let mut rows = Vec::new();
        for minute in [-10, 0, 15, 30, 60, 90, 120] {
            rows.push(result(participant, visit, minute, "c_peptide", 0.5 * scale));
            rows.push(result(participant, visit, minute, "glucose", 6.0));
        }
        rows
    }

    fn page(stored: &[MismatchReport], missing: &[MissingResult], results: &[ResultRow], all: bool) -> String {
        let rows = review_rows(stored, missing);
        let options = MismatchTextOptions {
            study: "S&1",
            generated_at: at(),
            include_resolved: all,
            timezone: "Europe/Stockholm",
            scheduled_slots: 14,
            locks: &[],
        };
        let (history, now) = (History::new(), Now::default());
        let snapshot = Snapshot { results, visits: &[], history: &history, now: &now };
        let mut out = Vec::new();
        write_mismatches_html(&mut out, &rows, snapshot, &config(), &options).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn parse(html: &str) -> roxmltree::Document<'_> {
        let options = roxmltree::ParsingOptions { allow_dtd: true, ..roxmltree::ParsingOptions::default() };
        roxmltree::Document::parse_with_options(html, options).unwrap()
    }

    fn with_class<'a, 'i>(root: roxmltree::Node<'a, 'i>, tag: &str, class: &str) -> Vec<roxmltree::Node<'a, 'i>> {
        root.descendants()
            .filter(|n| {
                n.tag_name().name() == tag && n.attribute("class").is_some_and(|c| c.split(' ').any(|x| x == class))
            })
            .collect()
    }

    fn span<'a>(section: roxmltree::Node<'a, '_>, class: &str, visit: &str, series: &str) -> Option<&'a str> {
        with_class(section, "span", class)
            .into_iter()
            .find(|n| n.attribute("data-series") == Some(series) && n.attribute("data-visit") == Some(visit))
            .and_then(|n| n.attribute("data-minutes"))
    }

    #[test]
    fn escape_makes_markup_text_and_forbidden_characters_visible() {
        assert_eq!(escape("a<b>&\"'c"), "a&lt;b&gt;&amp;&quot;&#39;c");
        assert_eq!(escape("\u{2}x\u{1B}\t\n\u{FFFF}"), "\u{2402}x\u{241B}\t\n\u{FFFD}");
        assert_eq!(escape("0.8 ± 3 µg/L"), "0.8 ± 3 µg/L");
        assert!(!CSS.contains('<') && !CSS.contains('&'), "the CSS is written unescaped");
    }

    #[test]
    fn long_names_may_wrap_after_separators_only() {
        let mut h = Html(String::new());
        h.breakable("file:/data/cobas-e411_export.astm at 0.66 <x>");
        assert_eq!(h.0, "file:<wbr/>/<wbr/>data/<wbr/>cobas-<wbr/>e411_<wbr/>export.<wbr/>astm at 0.66 &lt;x&gt;");
        let mut h = Html(String::new());
        h.breakable("NOT_FINAL OUT_OF_WINDOW");
        assert_eq!(h.0, "NOT_FINAL OUT_<wbr/>OF_<wbr/>WINDOW", "short words stay whole");
        let mut h = Html(String::new());
        h.breakable("run-2026-01-20T08:45:00/e411.astm");
        assert_eq!(h.0, "run-<wbr/>2026-01-20T08:45:00/<wbr/>e411.<wbr/>astm", "never inside a date or time");
    }

    #[test]
    fn sections_follow_participant_code_with_the_unmatched_first_and_one_chart_each() {
        let stored = [
            stored(1, MismatchCode::OutOfWindow, Some(("U10", 30, "c_peptide")), "late"),
            stored(2, MismatchCode::UnknownSample, None, "unknown <script>alert(1)</script>"),
            stored(3, MismatchCode::NotFinal, Some(("U02", 15, "glucose")), "status P"),
        ];
        let html = page(&stored, &[missing("U02", "V0", 60, "glucose")], &full_visit("U10", "V0", 1.0), false);
        let doc = parse(&html);
        let root = doc.root_element();
        let unmatched = with_class(root, "section", "group").into_iter().next().unwrap();
        assert_eq!(unmatched.attribute("data-participant"), None);
        let keys: Vec<Option<&str>> =
            with_class(root, "section", "participant").iter().map(|s| s.attribute("data-participant")).collect();
        assert_eq!(keys, [Some("U02"), Some("U10")]);
        assert!(doc.descendants().all(|n| !n.has_tag_name("script")));
        assert!(html.contains("unknown &lt;script&gt;alert(1)&lt;/<wbr/>script&gt;"), "{html}");
        assert!(html.contains("<title>Mismatches (open) for study S&amp;1</title>"));
        assert!(html.contains("<td class=\"sample\">S&lt;1&gt;</td>"));
        // U02 has no result: it says so instead of an empty chart.
        let svgs = |s: &roxmltree::Node| s.descendants().filter(|n| n.tag_name().name() == "svg").count();
        let sections = with_class(root, "section", "participant");
        assert_eq!(sections.iter().map(svgs).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(with_class(sections[0], "p", "nothing").len(), 1);
        let ids: Vec<String> =
            with_class(sections[0], "td", "id").iter().map(|n| n.text().unwrap_or_default().to_owned()).collect();
        assert_eq!(ids, ["3", ""]);
        assert!(html.contains("@page { size: A4;"), "printed on A4");
    }

    #[test]
    fn every_visit_of_a_participant_shares_one_chart_and_its_y_axis() {
        let stored = [stored(1, MismatchCode::OutOfWindow, Some(("U10", 30, "c_peptide")), "late")];
        let mut results = full_visit("U10", "V0", 2.0);
        results.extend(full_visit("U10", "V4", 0.1).into_iter().filter(|r| r.slot.minute != 60));
        results.retain(|r| !(r.slot.visit == "V0" && r.slot.minute == 0 && r.slot.analyte == "c_peptide"));
        let mut censored = result("U10", "V0", 0, "c_peptide", 0.01);
        censored.comparator = Some(Comparator::Lt);
        censored.blq = true;
        results.push(censored);
        let html = page(&stored, &[missing("U10", "V4", 60, "glucose")], &results, false);
        let doc = parse(&html);
        let section = with_class(doc.root_element(), "section", "participant")[0];
        let svgs: Vec<_> = section.descendants().filter(|n| n.tag_name().name() == "svg").collect();
        assert_eq!(svgs.len(), 1, "one chart for both visits");
        let panels = with_class(svgs[0], "g", "panel");
        let shapes: Vec<_> = panels.iter().map(|p| p.attribute("data-shape").unwrap()).collect();
        assert_eq!(shapes, ["circle", "square"]);
        // One y range for both visits: 0 to 1 nmol/L (V0 at 1.0, V4 at 0.05).
        assert_eq!((panels[0].attribute("data-y-min"), panels[0].attribute("data-y-max")), (Some("0"), Some("1")));
        for panel in &panels {
            let visits: Vec<_> = with_class(*panel, "g", "series").iter().map(|s| s.attribute("data-visit")).collect();
            assert_eq!(visits, [Some("V0"), Some("V4")]);
        }
        assert_eq!(span(section, "missing", "V4", "C-peptide"), Some("60"));
        assert_eq!(span(section, "missing", "V4", "glucose"), Some("60"));
        assert_eq!(span(section, "censored", "V0", "C-peptide"), Some("0"));
        assert_eq!(span(section, "flagged", "V0", "C-peptide"), Some("30"));
        assert_eq!(span(section, "flagged", "V4", "C-peptide"), None);
        let flags = with_class(svgs[0], "circle", "flag");
        assert_eq!(flags.len(), 1, "the out-of-window V0 C-peptide at 30");
        assert_eq!(flags[0].attribute("stroke"), Some(FLAG_COLOR));
    }

    #[test]
    fn a_visit_looks_the_same_in_every_participants_chart() {
        let mut results = full_visit("U01", "V0", 1.0);
        results.extend(full_visit("U01", "V4", 0.1));
        results.extend(full_visit("U02", "V4", 0.1));
        let stored = [
            stored(1, MismatchCode::NotFinal, Some(("U01", 15, "glucose")), "status P"),
            stored(2, MismatchCode::NotFinal, Some(("U02", 15, "glucose")), "status P"),
        ];
        let html = page(&stored, &[], &results, false);
        let doc = parse(&html);
        let style = |participant: &str, visit: &str| -> (String, String) {
            let section = with_class(doc.root_element(), "section", "participant")
                .into_iter()
                .find(|s| s.attribute("data-participant") == Some(participant))
                .unwrap();
            let series = with_class(section, "g", "series")
                .into_iter()
                .find(|s| s.attribute("data-visit") == Some(visit))
                .unwrap_or_else(|| panic!("{participant} {visit}"));
            let line = with_class(series, "polyline", "line")[0];
            let dash = series.attribute("stroke-dasharray").unwrap_or_default().to_owned();
            (line.attribute("stroke").unwrap_or_default().to_owned(), dash)
        };
        assert_eq!(style("U01", "V4"), style("U02", "V4"), "V4 alike whether or not V0 is there");
        assert_ne!(style("U01", "V0"), style("U01", "V4"));
        assert_ne!(style("U01", "V0").1, style("U01", "V4").1, "visits differ by line style too");
    }

    #[test]
    fn a_visit_with_nothing_received_is_one_line() {
        let all: Vec<MissingResult> = [-10, 0, 15, 30, 60, 90, 120]
            .into_iter()
            .flat_map(|m| [missing("U07", "V4", m, "c_peptide"), missing("U07", "V4", m, "glucose")])
            .collect();
        let html = page(&[], &all, &full_visit("U07", "V0", 1.0), false);
        let doc = parse(&html);
        let group = with_class(doc.root_element(), "section", "group")
            .into_iter()
            .find(|g| g.attribute("data-visit") == Some("V4"))
            .unwrap();
        assert_eq!(with_class(group, "table", "mismatches").len(), 0, "no row per slot");
        let line = with_class(group, "p", "nothing")[0];
        assert_eq!(
            line.text(),
            Some("V4: nothing received yet, 14 slots (MISSING_RESULT for every minute and analyte).")
        );
        let legend = with_class(doc.root_element(), "g", "legend-visit");
        let received: Vec<_> =
            legend.iter().map(|g| (g.attribute("data-visit"), g.attribute("data-received"))).collect();
        assert_eq!(received, [(Some("V0"), Some("true")), (Some("V4"), Some("false"))]);
    }

    #[test]
    fn resolved_rows_show_the_decision_and_the_current_state_with_all() {
        let mut resolved = stored(5, MismatchCode::UnknownSample, None, "no such sample");
        resolved.mismatch.resolution = Some(ResolutionRow {
            participant: Some("U02".into()),
            visit: Some("V0".into()),
            minute: Some(90),
            ..decided(1, ResolutionAction::Assign, "label <typo>", at())
        });
        let mut rejected = stored(6, MismatchCode::OutOfWindow, Some(("U02", 30, "c_peptide")), "late");
        rejected.mismatch.resolution = Some(decided(2, ResolutionAction::Reject, "haemolysed", at()));
        let html = page(&[resolved, rejected], &[], &[], true);
        parse(&html);
        assert!(html.contains("<h1>Mismatches (open and resolved) for study S&amp;1</h1>"), "{html}");
        assert!(
            html.contains(
                "<td class=\"resolution\"><span class=\"decision\">resolved (assign) by dm at 2026-03-02 10:00:00 \
                 Europe/<wbr/>Stockholm, assigned to U02/V0/90: label &lt;typo&gt;</span></td>"
            ),
            "{html}"
        );
        assert!(html.contains("<span class=\"effect\">moved to U02/V0/90</span>"), "{html}");
        assert!(html.contains("<span class=\"effect\">rejected: withdrawn from its slot</span>"), "{html}");
        assert!(html.contains("<tr class=\"resolved\" data-code=\"UNKNOWN_SAMPLE\">"), "{html}");
    }

    #[test]
    fn an_empty_review_says_so_and_is_still_a_document() {
        let html = page(&[], &[], &[], false);
        let doc = parse(&html);
        assert!(with_class(doc.root_element(), "section", "group").is_empty());
        assert!(html.contains("<p>No open mismatches.</p>"));
    }
}
