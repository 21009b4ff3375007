//! Property tests of the HTML pages: whatever an analyzer, a study file or a
//! data manager put in a sample ID, detail, reason, participant or visit code
//! (markup, `]]>`, quotes, control characters, non-ASCII, very long text),
//! `write_mismatches_html` and `write_auc_html` give a well-formed page with
//! no script, and a reader sees exactly that text: the input with only the
//! page's documented stand-ins (a C0 control as its control picture,
//! U+FFFE/U+FFFF as U+FFFD) and the line-end normalisation every XML or HTML
//! parser applies (CR LF and a lone CR read as LF).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use labfeed::report::html::{Marks, Snapshot, write_auc_html, write_mismatches_html};
use labfeed::report::mismatches::History;
use labfeed::report::now::Now;
use labfeed::report::{MismatchTextOptions, ReviewRow, review_rows};
use labfeed::store::{
    MismatchCode, MismatchId, MismatchReport, MismatchRow, ObservationId, Provenance, ReceiptId, ResolutionAction,
    ResolutionId, ResolutionRow, ResultId, ResultRow, Slot, Source, Visit,
};
use labfeed::study::config::Config;
use labfeed::study::missing::{Absence, MissingResult};
use proptest::collection::vec;
use proptest::prelude::*;
use roxmltree::{Document, Node, ParsingOptions};

use crate::support::EXAMPLE_CONFIG;

const TIMEPOINTS: [i64; 7] = [-10, 0, 15, 30, 60, 90, 120];

fn config() -> Config {
    Config::from_toml(EXAMPLE_CONFIG, Path::new("labfeed.toml")).unwrap()
}

fn at() -> jiff::Timestamp {
    "2026-03-02T09:00:00Z".parse().unwrap()
}

/// The page's documented stand-ins: a C0 control other than tab, LF and CR
/// as its control picture, U+FFFE and U+FFFF as U+FFFD.
fn pictured(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if u32::from(c) < 0x20 => char::from_u32(0x2400 + u32::from(c)).unwrap(),
            '\u{FFFE}' | '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Line ends as parsers read them (CR LF and a lone CR are LF). Applied to
/// both sides of a comparison: roxmltree leaves a CR before an entity
/// reference or at the end of a text as it is.
fn lines(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

/// Text as a reader of the page sees it.
fn visible(s: &str) -> String {
    lines(&pictured(s))
}

/// An attribute value as a parser gives it back: XML also turns each tab and
/// line end into a space.
fn visible_attr(s: &str) -> String {
    visible(s).replace(['\t', '\n'], " ")
}

fn attr(node: Node<'_, '_>, name: &str) -> Option<String> {
    node.attribute(name).map(|a| lines(a).replace(['\t', '\n'], " "))
}

/// A piece of hostile or unusual text.
fn piece() -> BoxedStrategy<String> {
    prop_oneof![
        Just("<".to_owned()),
        Just("&".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just(">".to_owned()),
        Just("]]>".to_owned()),
        Just("<![CDATA[".to_owned()),
        Just("<!--".to_owned()),
        Just("<script>alert(1)</script>".to_owned()),
        Just("<SCRIPT src=x>".to_owned()),
        Just("&amp;".to_owned()),
        Just("&#0;".to_owned()),
        Just("\r\n".to_owned()),
        Just("\u{7F}\u{85}".to_owned()),
        Just("\u{FFFE}\u{FFFF}".to_owned()),
        Just("µg/L ± Ω".to_owned()),
        Just("𝄞😀".to_owned()),
        Just("\u{200B}\u{202E}".to_owned()),
        (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap().to_string()),
        any::<char>().prop_map(String::from),
        "[A-Za-z0-9 ]{1,8}",
    ]
    .boxed()
}

/// Short mixes of pieces, sometimes any string, sometimes very long.
fn nasty() -> BoxedStrategy<String> {
    prop_oneof![
        8 => vec(piece(), 0..10).prop_map(|v| v.concat()),
        1 => any::<String>(),
        1 => (piece(), 300usize..2000).prop_map(|(p, n)| p.repeat(n)),
    ]
    .boxed()
}

/// A study code: sometimes a plain one, so rows share a section.
fn code(plain: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![2 => proptest::sample::select(plain).prop_map(str::to_owned), 3 => nasty()].boxed()
}

fn participant() -> BoxedStrategy<String> {
    code(&["U01", "U02"])
}

fn visit() -> BoxedStrategy<String> {
    code(&["V0", "V4"])
}

fn analyte() -> BoxedStrategy<String> {
    code(&["c_peptide", "glucose"])
}

prop_compose! {
    fn stored_row()(
        id in 1i64..1000,
        code in proptest::sample::select(MismatchCode::ALL.to_vec()),
        slot in proptest::option::of((participant(), proptest::option::of(visit()), proptest::option::of(-20i64..200), proptest::option::of(analyte()))),
        detail in nasty(),
        sample in proptest::option::of(nasty()),
        instrument in proptest::option::of(nasty()),
        reported in proptest::option::of((nasty(), nasty())),
        origin in proptest::option::of(nasty()),
        resolution in proptest::option::of((nasty(), nasty(), proptest::option::of((participant(), visit(), -20i64..200)))),
    ) -> MismatchReport {
        let (participant, visit, minute, analyte) = match slot {
            Some((p, v, m, a)) => (Some(p), v, m, a),
            None => (None, None, None, None),
        };
        let resolution = resolution.map(|(reason, by, assigned)| ResolutionRow {
            id: ResolutionId(id),
            action: if assigned.is_some() { ResolutionAction::Assign } else { ResolutionAction::Reject },
            participant: assigned.as_ref().map(|a| a.0.clone()),
            visit: assigned.as_ref().map(|a| a.1.clone()),
            minute: assigned.as_ref().map(|a| a.2),
            result_id: None,
            reason,
            resolved_by: by,
            resolved_at: at(),
        });
        MismatchReport {
            mismatch: MismatchRow {
                id: MismatchId(id),
                code,
                holds: code.holds_by_default(),
                observation_id: None,
                message_id: None,
                receipt_id: ReceiptId(1),
                participant,
                visit,
                minute,
                analyte,
                detail,
                created_at: at(),
                resolution,
            },
            provenance: Provenance {
                sample_id: sample,
                instrument: instrument.clone(),
                test_code: instrument,
                reported_value: reported.as_ref().map(|r| r.0.clone()),
                reported_unit: reported.map(|r| r.1),
                source: Some(Source::File),
                received_at: Some(at()),
                origin,
                ..Provenance::default()
            },
        }
    }
}

prop_compose! {
    fn missing_row()(
        participant in participant(),
        visit in visit(),
        minute in proptest::sample::select(TIMEPOINTS.to_vec()),
        analyte in analyte(),
        detail in nasty(),
    ) -> MissingResult {
        MissingResult {
            participant,
            visit,
            minute: i32::try_from(minute).unwrap(),
            analyte,
            meal_start: "2026-03-02T08:30".parse().unwrap(),
            absence: Absence::NotReceived,
            detail,
        }
    }
}

fn result(participant: &str, visit: &str, minute: i64, analyte: &str, value: f64, blq: bool) -> ResultRow {
    ResultRow {
        id: ResultId(1),
        observation_id: ObservationId(1),
        slot: Slot::new(participant, visit, minute, analyte),
        value,
        unit: "nmol/L".into(),
        comparator: None,
        blq,
        version: 1,
        supersedes: None,
        accepted_at: at(),
        accepted_by: "labfeed".into(),
        reason: "ingest".into(),
        withdrawn: false,
    }
}

/// The results of the rows' visits (some minutes left out, some censored),
/// one per slot in the store's order, and those visits with a meal start.
fn snapshot_of(rows: &[ReviewRow<'_>]) -> (Vec<ResultRow>, Vec<Visit>) {
    let mut results: BTreeMap<Slot, ResultRow> = BTreeMap::new();
    let mut visits: BTreeSet<(String, String)> = BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        let (Some(p), Some(v)) = (row.participant(), row.visit()) else { continue };
        visits.insert((p.to_owned(), v.to_owned()));
        for (j, minute) in TIMEPOINTS.iter().enumerate() {
            for (k, analyte) in ["c_peptide", "glucose"].iter().enumerate() {
                if (i + j + k) % 4 != 0 {
                    let r = result(p, v, *minute, analyte, 0.1 + j as f64 * (k + 1) as f64, (i + j) % 5 == 1);
                    results.insert(r.slot.clone(), r);
                }
            }
        }
    }
    let visits = visits
        .into_iter()
        .enumerate()
        .map(|(i, (participant, visit))| Visit {
            participant,
            visit,
            meal_start: (i % 2 == 0).then(|| "2026-03-02T08:30".parse().unwrap()),
        })
        .collect();
    (results.into_values().collect(), visits)
}

fn parse(html: &str) -> Document<'_> {
    let options = ParsingOptions { allow_dtd: true, ..ParsingOptions::default() };
    match Document::parse_with_options(html, options) {
        Ok(doc) => doc,
        Err(e) => panic!("not well-formed: {e}"),
    }
}

/// All the text inside `node`, as a reader sees it.
fn text_of(node: Node<'_, '_>) -> String {
    lines(&node.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect::<String>())
}

fn cells<'a, 'i>(doc: &'a Document<'i>, class: &str) -> Vec<String> {
    doc.descendants().filter(|n| n.has_tag_name("td") && n.attribute("class") == Some(class)).map(text_of).collect()
}

/// No script, nothing loaded from outside the page.
fn assert_self_contained(html: &str, doc: &Document<'_>) {
    assert!(!html.to_ascii_lowercase().contains("<script"), "a script element");
    for n in doc.descendants().filter(|n| n.is_element()) {
        assert!(!n.tag_name().name().eq_ignore_ascii_case("script"));
        assert!(n.attribute("src").is_none(), "{:?} loads from outside", n.tag_name());
        if let Some(href) = n.attribute("href") {
            assert!(href.starts_with('#'), "a link out of the page: {href:?}");
        }
        assert!(n.attributes().all(|a| !a.name().to_ascii_lowercase().starts_with("on")), "an event handler");
    }
    // Every id once, so the contents' links lead to one place.
    let ids: Vec<&str> = doc.descendants().filter_map(|n| n.attribute("id")).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a repeated id: {ids:?}");
}

/// `V0 (Baseline)` for a configured visit, else the code, as the page titles it.
fn visit_title(config: &Config, visit: &str) -> String {
    match config.visits.iter().find(|v| v.code == visit) {
        Some(v) if !v.name.is_empty() => format!("{visit} ({})", v.name),
        _ => visit.to_owned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mismatch_page_is_well_formed_and_shows_the_text_as_given(
        mut stored in vec(stored_row(), 0..6),
        missing in vec(missing_row(), 0..4),
        study in nasty(),
        all in any::<bool>(),
    ) {
        // The store lists rows in report order with unique ids; without
        // --all only the open ones.
        stored.sort_by(|a, b| {
            let key = |r: &MismatchReport| {
                let m = &r.mismatch;
                (m.participant.clone(), m.visit.clone(), m.minute, m.analyte.clone())
            };
            key(a).cmp(&key(b))
        });
        for (i, r) in stored.iter_mut().enumerate() {
            r.mismatch.id = MismatchId(i as i64 + 1);
            if !all {
                r.mismatch.resolution = None;
            }
        }
        let config = config();
        let rows = review_rows(&stored, &missing);
        let (results, visits) = snapshot_of(&rows);
        let options = MismatchTextOptions {
            study: &study,
            generated_at: at(),
            include_resolved: all,
            timezone: &config.study.timezone,
            scheduled_slots: config.mmtt.timepoints.len() * config.analytes.len(),
            locks: &[],
        };
        let mut out = Vec::new();
        write_mismatches_html(&mut out, &rows, Snapshot { results: &results, visits: &visits, history: &History::new(), now: &Now::default() }, &config, &options)
            .unwrap();
        let html = String::from_utf8(out).unwrap();
        let doc = parse(&html);
        assert_self_contained(&html, &doc);

        let scope = if all { "open and resolved" } else { "open" };
        let title = doc.descendants().find(|n| n.has_tag_name("title")).map(text_of);
        prop_assert_eq!(title, Some(visible(&format!("Mismatches ({scope}) for study {study}"))));

        // Every row's detail and sample ID, in report order.
        let details: Vec<String> = rows
            .iter()
            .map(|r| match r {
                ReviewRow::Stored(s) => visible(&s.mismatch.detail),
                ReviewRow::Missing(m) => visible(&m.detail),
            })
            .collect();
        prop_assert_eq!(cells(&doc, "detail"), details);
        let samples: Vec<String> = rows
            .iter()
            .map(|r| match r {
                ReviewRow::Stored(s) => visible(s.provenance.sample_id.as_deref().unwrap_or_default()),
                ReviewRow::Missing(_) => String::new(),
            })
            .collect();
        prop_assert_eq!(cells(&doc, "sample"), samples);

        // A resolved row ends with the data manager's reason.
        if all {
            let shown = cells(&doc, "resolution");
            prop_assert_eq!(shown.len(), rows.len());
            for (row, text) in rows.iter().zip(&shown) {
                let resolution = match row {
                    ReviewRow::Stored(s) => s.mismatch.resolution.as_ref(),
                    ReviewRow::Missing(_) => None,
                };
                match resolution {
                    Some(r) if !r.reason.is_empty() => {
                        prop_assert!(text.ends_with(&visible(&format!(": {}", r.reason))), "{text:?}");
                        prop_assert!(text.contains(&visible(&r.resolved_by)));
                    }
                    Some(_) => {}
                    None => prop_assert_eq!(text, ""),
                }
            }
        }

        // One section per run of rows with the same participant and visit,
        // keyed with those codes and titled with the visit (or, without a
        // participant, saying so); one section per participant, titled with
        // its code, with one chart when some visit of it has results.
        let mut expected: Vec<(Option<&str>, Option<&str>)> = Vec::new();
        for row in &rows {
            let key = (row.participant(), row.visit());
            if expected.last() != Some(&key) {
                expected.push(key);
            }
        }
        let sections: Vec<Node<'_, '_>> = doc
            .descendants()
            .filter(|n| n.has_tag_name("section") && n.attribute("class") == Some("group"))
            .collect();
        prop_assert_eq!(sections.len(), expected.len());
        for (section, (p, v)) in sections.iter().zip(&expected) {
            prop_assert_eq!(attr(*section, "data-participant"), p.map(visible_attr));
            prop_assert_eq!(attr(*section, "data-visit"), v.map(visible_attr));
            let heading = section.descendants().find(|n| n.has_tag_name("h2") || n.has_tag_name("h3")).map(text_of);
            let title = match (p, v) {
                (Some(_), Some(v)) => format!("Visit {}", visit_title(&config, v)),
                (Some(_), None) => "Visit not known".to_owned(),
                (None, _) => "Not matched to a participant".to_owned(),
            };
            prop_assert_eq!(heading, Some(visible(&title)));
        }
        let mut participants: Vec<(&str, bool)> = Vec::new();
        for (p, v) in expected.iter() {
            let Some(p) = p else { continue };
            match participants.last_mut() {
                Some((last, with_visit)) if last == p => *with_visit |= v.is_some(),
                _ => participants.push((p, v.is_some())),
            }
        }
        let of_participant: Vec<Node<'_, '_>> = doc
            .descendants()
            .filter(|n| n.has_tag_name("section") && n.attribute("class") == Some("participant"))
            .collect();
        prop_assert_eq!(of_participant.len(), participants.len());
        for (section, (p, with_visit)) in of_participant.iter().zip(&participants) {
            prop_assert_eq!(attr(*section, "data-participant"), Some(visible_attr(p)));
            let h2 = section.descendants().find(|n| n.has_tag_name("h2")).map(text_of);
            prop_assert_eq!(h2, Some(visible(&format!("Participant {p}"))));
            let curves = section.descendants().filter(|n| n.tag_name().name() == "svg").count();
            prop_assert_eq!(curves, usize::from(*with_visit));
        }
    }

    #[test]
    fn auc_page_is_well_formed_and_shows_the_codes_as_given(
        draws in vec((participant(), visit(), 0usize..7, any::<bool>(), 0.0f64..20.0, any::<bool>()), 0..14),
        flag in vec(any::<bool>(), 14),
        study in nasty(),
    ) {
        let mut config = config();
        config.study.id = study.clone();
        // One current result per slot, in the store's order.
        let mut by_slot: BTreeMap<Slot, ResultRow> = BTreeMap::new();
        for (p, v, minute, glucose, value, blq) in &draws {
            let analyte = if *glucose { "glucose" } else { "c_peptide" };
            let r = result(p, v, TIMEPOINTS[*minute], analyte, *value, *blq);
            by_slot.insert(r.slot.clone(), r);
        }
        let results: Vec<ResultRow> = by_slot.into_values().collect();
        let flagged: BTreeSet<Slot> =
            results.iter().zip(&flag).filter(|(_, f)| **f).map(|(r, _)| r.slot.clone()).collect();
        let visits: Vec<Visit> = Vec::new();
        let rows = labfeed::study::auc::compute(&config, &results);
        let mut out = Vec::new();
        let marks = Marks { flagged: &flagged, withdrawn: &BTreeSet::new() };
        write_auc_html(&mut out, &rows, Snapshot { results: &results, visits: &visits, history: &History::new(), now: &Now::default() }, marks, &config, at())
            .unwrap();
        let html = String::from_utf8(out).unwrap();
        let doc = parse(&html);
        assert_self_contained(&html, &doc);
        let h1 = doc.descendants().find(|n| n.has_tag_name("h1")).map(text_of);
        prop_assert_eq!(h1, Some(visible(&format!("MMTT AUC for study {study}"))));

        // A table row per AUC row with the participant's code as given.
        let participants: Vec<String> = rows.iter().map(|r| visible(&r.participant)).collect();
        prop_assert_eq!(cells(&doc, "participant"), participants);
        let shown_visits: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("td") && n.attribute("class") == Some("visit"))
            .map(|n| lines(&n.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect::<String>()))
            .collect();
        prop_assert_eq!(shown_visits, rows.iter().map(|r| visible(&r.visit)).collect::<Vec<_>>());

        // A section per participant titled with its code, and one chart in it
        // with a series for each of its visits in each analyte's panel.
        let mut expected: Vec<(&str, BTreeSet<&str>)> = Vec::new();
        for r in &rows {
            match expected.last_mut() {
                Some((p, visits)) if *p == r.participant => {
                    visits.insert(&r.visit);
                }
                _ => expected.push((&r.participant, BTreeSet::from([r.visit.as_str()]))),
            }
        }
        let sections: Vec<Node<'_, '_>> = doc
            .descendants()
            .filter(|n| n.has_tag_name("section") && n.attribute("class") == Some("participant"))
            .collect();
        prop_assert_eq!(sections.len(), expected.len());
        for (section, (p, visits)) in sections.iter().zip(&expected) {
            prop_assert_eq!(attr(*section, "data-participant"), Some(visible_attr(p)));
            let h2 = section.descendants().find(|n| n.has_tag_name("h2")).map(text_of);
            prop_assert_eq!(h2, Some(visible(&format!("Participant {p}"))));
            prop_assert_eq!(section.descendants().filter(|n| n.tag_name().name() == "svg").count(), 1);
            let wanted: BTreeSet<String> = visits.iter().map(|v| visible_attr(v)).collect();
            for panel in section.descendants().filter(|n| n.attribute("class") == Some("panel")) {
                let drawn: BTreeSet<String> = panel
                    .descendants()
                    .filter(|n| n.attribute("class") == Some("series"))
                    .filter_map(|n| attr(n, "data-visit"))
                    .collect();
                prop_assert_eq!(&drawn, &wanted);
            }
            let legend: Vec<String> = section
                .descendants()
                .filter(|n| n.attribute("class") == Some("legend-visit"))
                .map(text_of)
                .collect();
            for v in visits {
                let title = visible(&visit_title(&config, v));
                prop_assert!(legend.iter().any(|l| l.starts_with(&title)), "{legend:?} {title:?}");
            }
        }
    }
}
