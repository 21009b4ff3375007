//! `report mismatches --format html` and `report auc --format html`: one
//! self-contained page a data manager opens in a browser or prints.
//!
//! Self-contained: inline CSS, the MMTT curves as inline SVG ([`plot`]), no
//! script, no link or image outside the page. The page is polyglot HTML5
//! (also well-formed XML: every element closed, attributes quoted, only the
//! five XML entities), UTF-8. Every text from data or configuration is
//! escaped here; nothing is written unescaped except the markup this module
//! makes and the SVG that plotters makes (which escapes its own text).
//!
//! Like the other writers these only format: rows come in the store's
//! neutral order (participant code, visit, minute, analyte) and sections
//! follow that order, so nothing groups or orders participants in a way that
//! could reveal allocation.
//!
//! [`plot`]: crate::report::plot

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use crate::report::auc::{AUC_COLUMNS, auc_record};
use crate::report::format::{format_value, utc_time};
use crate::report::mismatches::{MISSING_RESULT, MismatchTextOptions, ReviewRow, mismatch_record};
use crate::report::plot::{Curve, Point, Series, curve_svg};
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
}

/// `text` for HTML content or a quoted attribute value: the markup
/// characters as entity references, and characters XML does not allow as
/// visible stand-ins (a C0 control as its Unicode control picture, e.g.
/// STX as `␂`; U+FFFE and U+FFFF as U+FFFD), so the page stays well-formed
/// whatever an analyzer sent.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if u32::from(c) < 0x20 => out.push(char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{FFFD}')),
            '\u{FFFE}' | '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

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
            self.0.push_str(&escape(value));
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
        self.0.push_str(&escape(text));
        self
    }

    /// `<tag attrs>text</tag>`.
    fn element(&mut self, tag: &str, attrs: &[(&str, &str)], text: &str) -> &mut Self {
        self.open(tag, attrs).text(text).close(tag)
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

    fn finish(mut self, out: &mut dyn Write) -> io::Result<()> {
        self.close("body").line().close("html").line();
        out.write_all(self.0.as_bytes())
    }

    /// A table header row.
    fn head_row(&mut self, names: &[&str]) -> &mut Self {
        self.open("thead", &[]).open("tr", &[]);
        for name in names {
            self.element("th", &[("scope", "col")], name);
        }
        self.close("tr").close("thead").line()
    }
}

/// Light and printable; no fonts or images from outside the page. No `<`
/// or `&` (it is written unescaped).
const CSS: &str = "
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #111; background: #fff;
  max-width: 80em; margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 1.45em; margin: 0 0 .2em; }
h2 { font-size: 1.15em; margin: 1.8em 0 .4em; padding-bottom: .15em; border-bottom: 1px solid #999; }
h3 { font-size: 1em; margin: 1.2em 0 .3em; }
p.meta { color: #444; margin: 0 0 1em; }
table { border-collapse: collapse; margin: .4em 0 1em; font-size: .9em; }
th, td { border: 1px solid #bbb; padding: .2em .45em; text-align: left; vertical-align: top; }
th { background: #eee; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.code, td.id, td.sample { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; white-space: nowrap; }
td.detail { min-width: 18em; }
td.source { overflow-wrap: anywhere; font-size: .9em; }
tr.resolved { color: #555; }
tr.baseline td { background: #f4f8fc; }
span.tag { font-size: .8em; border: 1px solid #888; border-radius: 3px; padding: 0 .3em; margin-left: .3em; }
figure { margin: .6em 0 1em; }
figure svg { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .88em; color: #333; max-width: 60em; }
nav ol { columns: 3 14em; margin: .3em 0; padding-left: 1.4em; }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; }
dl.settings dt { font-weight: 600; }
dl.settings dd { margin: 0; }
@media print {
  body { max-width: none; margin: 0; font-size: 10pt; }
  nav { display: none; }
  h2, h3 { break-after: avoid; }
  figure, tr, div.head, section.visit { break-inside: avoid; }
  figure svg { border: none; }
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

/// One visit's curve: C-peptide left, glucose right (the analytes with
/// built-in meaning); `None` when neither is configured.
fn visit_curve(
    config: &Config,
    participant: &str,
    visit: &str,
    results: &[&ResultRow],
    flagged: &BTreeSet<Slot>,
) -> Option<Curve> {
    let series = |wanted: KnownAnalyte| -> Option<Series> {
        let (name, analyte) = config.analytes.iter().find(|(n, _)| KnownAnalyte::from_name(n) == Some(wanted))?;
        let display = analyte_name(name);
        let mut s = Series { axis: format!("{display} ({})", analyte.unit), name: display, ..Series::default() };
        for r in results.iter().filter(|r| &r.slot.analyte == name) {
            let Ok(minute) = i32::try_from(r.slot.minute) else { continue };
            let censored = r.blq || r.comparator.is_some();
            s.points.insert(minute, if censored { Point::Censored(r.value) } else { Point::Measured(r.value) });
        }
        s.flagged = flagged
            .iter()
            .filter(|f| f.participant == participant && f.visit == visit && &f.analyte == name)
            .filter_map(|f| i32::try_from(f.minute).ok())
            .collect();
        Some(s)
    };
    let curve = Curve {
        timepoints: config.mmtt.timepoints.clone(),
        left: series(KnownAnalyte::CPeptide),
        right: series(KnownAnalyte::Glucose),
    };
    (curve.left.is_some() || curve.right.is_some()).then_some(curve)
}

/// The curve as a `<figure>`: the SVG and a caption that says in words what
/// the markers show (for a reader who cannot see the image, and for print).
fn write_curve(h: &mut Html, curve: &Curve) -> io::Result<()> {
    let svg = curve_svg(curve).map_err(io::Error::other)?;
    h.open("figure", &[("class", "curve")]).line();
    h.0.push_str(svg.trim_end());
    h.line().open("figcaption", &[]);
    let axes: Vec<String> = [(&curve.left, "left"), (&curve.right, "right")]
        .iter()
        .filter_map(|(s, side)| s.as_ref().map(|s| format!("{} ({side} axis)", s.axis)))
        .collect();
    h.text(&format!("{} against minutes after meal start.", axes.join(" and ")));
    for series in curve.left.iter().chain(&curve.right) {
        let missing: Vec<i32> = series.missing(&curve.timepoints).collect();
        let censored: Vec<i32> =
            series.points.iter().filter(|(_, p)| matches!(p, Point::Censored(_))).map(|(m, _)| *m).collect();
        let flagged: Vec<i32> = series.flagged.iter().copied().collect();
        for (class, what, minutes) in
            [("missing", "missing", missing), ("censored", "censored", censored), ("flagged", "open mismatch", flagged)]
        {
            if minutes.is_empty() {
                continue;
            }
            let list = minutes.iter().map(i32::to_string).collect::<Vec<_>>().join(" ");
            h.text(" ");
            h.element(
                "span",
                &[("class", class), ("data-series", &series.name), ("data-minutes", &list)],
                &format!("{} {what} at {} min.", series.name, minute_list(&minutes)),
            );
        }
    }
    h.close("figcaption").line().close("figure").line();
    Ok(())
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

fn group_title(config: &Config, g: &Group<'_>) -> String {
    match (g.participant, g.visit) {
        (Some(p), Some(v)) => format!("Participant {p}, visit {}", visit_title(config, v)),
        (Some(p), None) => format!("Participant {p}, visit not known"),
        (None, _) => "Not matched to a participant".to_owned(),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The mismatch review page: a summary by code, then one section per
/// participant and visit (rows without a participant first) with the visit's
/// MMTT curve and a table of its mismatches.
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
    h.element("p", &[("class", "meta")], &format!("As of {} (UTC). {count}.", utc_time(options.generated_at))).line();

    write_summary(&mut h, rows, options.include_resolved);
    let groups = groups(rows);
    if groups.len() > 1 {
        h.open("nav", &[]).element("h2", &[], "Sections").open("ol", &[]);
        for (i, g) in groups.iter().enumerate() {
            h.open("li", &[]);
            h.element("a", &[("href", &format!("#g{}", i + 1))], &group_title(config, g));
            h.text(&format!(" ({})", g.rows.len())).close("li");
        }
        h.close("ol").close("nav").line();
    }

    let flagged = flagged_slots(rows.iter().filter_map(|row| match row {
        ReviewRow::Stored(r) => Some(*r),
        ReviewRow::Missing(_) => None,
    }));
    let results = results_by_visit(snapshot.results);
    for (i, g) in groups.iter().enumerate() {
        let id = format!("g{}", i + 1);
        let mut attrs = vec![("id", id.as_str()), ("class", "group")];
        if let Some(p) = g.participant {
            attrs.push(("data-participant", p));
        }
        if let Some(v) = g.visit {
            attrs.push(("data-visit", v));
        }
        h.open("section", &attrs).line();
        // Title, meal start and curve stay on one printed page.
        h.open("div", &[("class", "head")]).line();
        h.element("h2", &[], &group_title(config, g)).line();
        if let (Some(p), Some(v)) = (g.participant, g.visit) {
            let meal = snapshot.visits.iter().find(|x| x.participant == p && x.visit == v).and_then(|x| x.meal_start);
            let meal = match meal {
                Some(t) => format!("Meal start {} ({}).", t.display_minutes(), config.study.timezone),
                None => "No meal start recorded for this visit.".to_owned(),
            };
            h.element("p", &[("class", "meal")], &meal).line();
            let visit_results = results.get(&(p, v)).map(Vec::as_slice).unwrap_or_default();
            if let Some(curve) = visit_curve(config, p, v, visit_results, &flagged) {
                write_curve(&mut h, &curve)?;
            }
        }
        h.close("div").line();
        write_mismatch_table(&mut h, &g.rows, options.include_resolved);
        h.close("section").line();
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

const MISMATCH_HEADINGS: [(&str, &str); 12] = [
    ("id", "id"),
    ("code", "code"),
    ("sample", "sample"),
    ("minute", "minute"),
    ("analyte", "analyte"),
    ("reported", "reported"),
    ("instrument", "instrument / test"),
    ("detail", "detail"),
    ("source", "source"),
    ("received", "received (UTC)"),
    ("effect", "result"),
    ("state", "state"),
];

fn write_mismatch_table(h: &mut Html, rows: &[&ReviewRow<'_>], include_resolved: bool) {
    let mut names: Vec<&str> = MISMATCH_HEADINGS.iter().map(|(_, n)| *n).collect();
    if include_resolved {
        names.push("resolution");
    }
    h.open("table", &[("class", "mismatches")]).line().head_row(&names).open("tbody", &[]).line();
    for row in rows {
        // One source of the fields for CSV, text and HTML.
        let [id, code, sample, _, _, minute, analyte, instrument, test, value, unit, detail, source, received, state] =
            mismatch_record(row);
        let reported = [value, unit].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        let instrument = [instrument, test].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" / ");
        let effect = match row {
            ReviewRow::Stored(r) if r.mismatch.holds => "held back",
            ReviewRow::Stored(_) => "accepted, flagged",
            ReviewRow::Missing(m) => match m.absence {
                Absence::NotReceived => "not received",
                Absence::Held(_) => "held for review",
                Absence::Withdrawn => "withdrawn",
            },
        };
        let cells = [id, code.clone(), sample, minute, analyte, reported, instrument, detail, source, received];
        h.open("tr", &[("class", &state), ("data-code", &code)]);
        for ((class, _), text) in MISMATCH_HEADINGS.iter().zip(cells) {
            let class = if matches!(*class, "id" | "minute") { format!("{class} num") } else { (*class).to_owned() };
            h.element("td", &[("class", &class)], &text);
        }
        h.element("td", &[("class", "effect")], effect);
        h.element("td", &[("class", "state")], &state);
        if include_resolved {
            h.element("td", &[("class", "resolution")], &resolution_text(row));
        }
        h.close("tr").line();
    }
    h.close("tbody").close("table").line();
}

/// `assign by dm at 2026-03-02T08:00:00Z, to U02/V1/90: reason`.
fn resolution_text(row: &ReviewRow<'_>) -> String {
    let ReviewRow::Stored(r) = row else { return String::new() };
    let Some(res) = &r.mismatch.resolution else { return String::new() };
    let mut text = format!("{} by {} at {}", res.action, res.resolved_by, utc_time(res.resolved_at));
    if let (Some(p), Some(v), Some(n)) = (&res.participant, &res.visit, res.minute) {
        text.push_str(&format!(", assigned to {p}/{v}/{n}"));
    }
    if !res.reason.is_empty() {
        text.push_str(&format!(": {}", res.reason));
    }
    text
}

/// The AUC page: the settings the numbers depend on, then per participant
/// (code order) the SPEC §5 AUC table and each visit's curve.
///
/// `rows` from [`crate::study::auc::compute`]; `flagged` are the slots with an
/// open mismatch (a flagged value counted in the AUC, or a held-back one).
pub fn write_auc_html(
    out: &mut dyn Write,
    rows: &[AucRow],
    snapshot: Snapshot<'_>,
    flagged: &BTreeSet<Slot>,
    config: &Config,
    generated_at: jiff::Timestamp,
) -> io::Result<()> {
    let title = format!("MMTT AUC for study {}", config.study.id);
    let mut h = Html::start(&title);
    h.element("h1", &[], &title).line();
    let count = match rows.len() {
        0 => "No AUC rows".to_owned(),
        n => plural(n, "AUC row", "AUC rows"),
    };
    h.element("p", &[("class", "meta")], &format!("As of {} (UTC). {count}.", utc_time(generated_at))).line();
    write_settings(&mut h, config);

    let results = results_by_visit(snapshot.results);
    let baseline = config.baseline_visit().map(|v| v.code.as_str());
    for of_participant in rows.chunk_by(|a, b| a.participant == b.participant) {
        let Some(first) = of_participant.first() else { continue };
        let participant = first.participant.as_str();
        h.open("section", &[("class", "participant"), ("data-participant", participant)]).line();
        h.element("h2", &[], &format!("Participant {participant}")).line();
        write_auc_table(&mut h, of_participant, config, baseline);
        let mut visits: Vec<&str> = Vec::new();
        for r in of_participant {
            if !visits.contains(&r.visit.as_str()) {
                visits.push(&r.visit);
            }
        }
        for visit in visits {
            h.open("section", &[("class", "visit"), ("data-participant", participant), ("data-visit", visit)]);
            h.line().element("h3", &[], &format!("Visit {}", visit_title(config, visit))).line();
            let visit_results = results.get(&(participant, visit)).map(Vec::as_slice).unwrap_or_default();
            if let Some(curve) = visit_curve(config, participant, visit, visit_results, flagged) {
                write_curve(&mut h, &curve)?;
            }
            h.close("section").line();
        }
        h.close("section").line();
    }
    if rows.is_empty() {
        h.element("p", &[], "No current results: there is nothing to compute an AUC from.").line();
    }
    h.finish(out)
}

fn write_auc_table(h: &mut Html, rows: &[AucRow], config: &Config, baseline: Option<&str>) {
    // The SPEC §5 columns, with the unit after the analyte.
    let (names, numbers) = AUC_COLUMNS.split_at(3);
    let head: Vec<&str> = names.iter().chain(&["unit"]).chain(numbers).copied().collect();
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
    use crate::report::plot::{FLAG_COLOR, LEFT_COLOR};
    use crate::report::review_rows;
    use crate::store::{
        MismatchId, MismatchReport, MismatchRow, ObservationId, Provenance, ReceiptId, ResolutionAction, ResolutionId,
        ResolutionRow, ResultId,
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

    fn missing(participant: &str, minute: i32, analyte: &str) -> MissingResult {
        MissingResult {
            participant: participant.into(),
            visit: "V0".into(),
            minute,
            analyte: analyte.into(),
            meal_start: "2026-03-02T08:30".parse().unwrap(),
            absence: crate::study::missing::Absence::NotReceived,
            detail: format!("no accepted {analyte} result at minute {minute}"),
        }
    }

    fn result(participant: &str, minute: i64, analyte: &str, value: f64) -> ResultRow {
        ResultRow {
            id: ResultId(1),
            observation_id: ObservationId(1),
            slot: Slot::new(participant, "V0", minute, analyte),
            value,
            unit: "nmol/L".into(),
            comparator: None,
            blq: false,
            version: 1,
            supersedes: None,
            accepted_at: at(),
            accepted_by: "labfeed".into(),
            reason: "ingest".into(),
            withdrawn: false,
        }
    }

    /// Every scheduled result of a visit, C-peptide and glucose.
    fn full_visit(participant: &str) -> Vec<ResultRow> {
        let mut rows = Vec::new();
        for minute in [-10, 0, 15, 30, 60, 90, 120] {
            rows.push(result(participant, minute, "c_peptide", 0.5));
            rows.push(result(participant, minute, "glucose", 6.0));
        }
        rows
    }

    fn page(stored: &[MismatchReport], missing: &[MissingResult], results: &[ResultRow], all: bool) -> String {
        let rows = review_rows(stored, missing);
        let options = MismatchTextOptions { study: "S&1", generated_at: at(), include_resolved: all };
        let snapshot = Snapshot { results, visits: &[] };
        let mut out = Vec::new();
        write_mismatches_html(&mut out, &rows, snapshot, &config(), &options).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn parse(html: &str) -> roxmltree::Document<'_> {
        let options = roxmltree::ParsingOptions { allow_dtd: true, ..roxmltree::ParsingOptions::default() };
        roxmltree::Document::parse_with_options(html, options).unwrap()
    }

    fn sections<'a, 'i>(doc: &'a roxmltree::Document<'i>) -> Vec<roxmltree::Node<'a, 'i>> {
        doc.descendants().filter(|n| n.has_tag_name("section") && n.attribute("class") == Some("group")).collect()
    }

    fn span<'a, 'i>(section: roxmltree::Node<'a, 'i>, class: &str, series: &str) -> Option<&'a str> {
        section
            .descendants()
            .find(|n| {
                n.has_tag_name("span")
                    && n.attribute("class") == Some(class)
                    && n.attribute("data-series") == Some(series)
            })
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
    fn sections_follow_participant_code_with_the_unmatched_first() {
        let stored = [
            stored(1, MismatchCode::OutOfWindow, Some(("U10", 30, "c_peptide")), "late"),
            stored(2, MismatchCode::UnknownSample, None, "unknown <script>alert(1)</script>"),
            stored(3, MismatchCode::NotFinal, Some(("U02", 15, "glucose")), "status P"),
        ];
        let html = page(&stored, &[missing("U02", 60, "glucose")], &full_visit("U10"), false);
        let doc = parse(&html);
        let keys: Vec<Option<&str>> = sections(&doc).iter().map(|s| s.attribute("data-participant")).collect();
        assert_eq!(keys, [None, Some("U02"), Some("U10")]);
        // Data is text: the detail's markup is shown, never run.
        assert!(doc.descendants().all(|n| !n.has_tag_name("script")));
        assert!(html.contains("unknown &lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("<title>Mismatches (open) for study S&amp;1</title>"));
        assert!(html.contains("<td class=\"sample\">S&lt;1&gt;</td>"));
        // Only visit sections get a curve; the missing-result row has no id.
        let svgs = |s: &roxmltree::Node| s.descendants().filter(|n| n.tag_name().name() == "svg").count();
        assert_eq!(sections(&doc).iter().map(svgs).collect::<Vec<_>>(), [0, 1, 1]);
        let u02 = sections(&doc)[1];
        let ids: Vec<String> = u02
            .descendants()
            .filter(|n| n.attribute("class") == Some("id num"))
            .map(|n| n.text().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(ids, ["3", ""]);
    }

    #[test]
    fn missing_and_flagged_points_are_marked_on_the_curve_and_said_in_the_caption() {
        let stored = [
            stored(1, MismatchCode::OutOfWindow, Some(("U10", 30, "c_peptide")), "late"),
            stored(3, MismatchCode::NotFinal, Some(("U02", 15, "glucose")), "status P"),
        ];
        let mut results = full_visit("U10");
        results.extend(full_visit("U02").into_iter().filter(|r| r.slot.minute != 15 && r.slot.minute != 60));
        results.retain(|r| !(r.slot.participant == "U02" && r.slot.minute == 0 && r.slot.analyte == "c_peptide"));
        let mut censored = result("U02", 0, "c_peptide", 0.01);
        censored.comparator = Some(Comparator::Lt);
        censored.blq = true;
        results.push(censored);
        let html = page(&stored, &[missing("U02", 60, "glucose")], &results, false);
        let doc = parse(&html);
        let [u02, u10] = sections(&doc)[..] else { panic!("two sections") };
        // U02: nothing at 15 or 60; the held glucose at 15 is flagged (ringed on its cross).
        assert_eq!(span(u02, "missing", "C-peptide"), Some("15 60"));
        assert_eq!(span(u02, "missing", "glucose"), Some("15 60"));
        assert_eq!(span(u02, "flagged", "glucose"), Some("15"));
        assert_eq!(span(u02, "censored", "C-peptide"), Some("0"));
        assert_eq!(span(u02, "flagged", "C-peptide"), None);
        // U10: complete, its out-of-window C-peptide at 30 flagged.
        assert_eq!(span(u10, "missing", "C-peptide"), None);
        assert_eq!(span(u10, "flagged", "C-peptide"), Some("30"));
        let rings = |s: roxmltree::Node, color: &str| {
            s.descendants().filter(|n| n.has_tag_name("circle") && n.attribute("stroke") == Some(color)).count()
        };
        // One ring per flagged point plus the legend's sample; crosses are two lines each.
        assert_eq!(rings(u10, FLAG_COLOR), 2);
        assert_eq!(rings(u02, FLAG_COLOR), 2);
        let crosses =
            u02.descendants().filter(|n| n.has_tag_name("line") && n.attribute("stroke") == Some(LEFT_COLOR)).count();
        assert_eq!(crosses, 2 * 2);
        assert_eq!(rings(u02, LEFT_COLOR), 1, "the censored C-peptide is hollow");
    }

    #[test]
    fn resolved_rows_show_the_decision_with_all() {
        let mut resolved = stored(5, MismatchCode::UnknownSample, None, "no such sample");
        resolved.mismatch.resolution = Some(ResolutionRow {
            id: ResolutionId(1),
            action: ResolutionAction::Assign,
            participant: Some("U02".into()),
            visit: Some("V0".into()),
            minute: Some(90),
            result_id: None,
            reason: "label <typo>".into(),
            resolved_by: "dm".into(),
            resolved_at: at(),
        });
        let html = page(&[resolved], &[], &[], true);
        parse(&html);
        assert!(html.contains("<h1>Mismatches (open and resolved) for study S&amp;1</h1>"), "{html}");
        assert!(
            html.contains(
                "<td class=\"resolution\">assign by dm at 2026-03-02T09:00:00Z, assigned to U02/V0/90: label &lt;typo&gt;</td>"
            ),
            "{html}"
        );
        assert!(html.contains("<tr class=\"resolved\" data-code=\"UNKNOWN_SAMPLE\">"), "{html}");
    }

    #[test]
    fn an_empty_review_says_so_and_is_still_a_document() {
        let html = page(&[], &[], &[], false);
        let doc = parse(&html);
        assert!(sections(&doc).is_empty());
        assert!(html.contains("<p>No open mismatches.</p>"));
    }
}
