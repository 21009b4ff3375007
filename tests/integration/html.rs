//! `report mismatches --format html` and `report auc --format html` through
//! the real binary: a small study is imported and ingested (ASTM and HL7),
//! then the page is opened with an XML parser and its structure checked:
//! sections in participant-code order, the mismatch rows, one curve per
//! visit with its markers, and nothing that reaches outside the page.

use std::path::Path;

use labfeed::report::plot::{FLAG_COLOR, LEFT_COLOR, RIGHT_COLOR};
use roxmltree::{Document, Node, ParsingOptions};

use crate::support::{TempStudy, text};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Participants imported out of code order; U12 has no visit.
const PARTICIPANTS: &str = "participant,site\nU07,Uppsala\nU12,Uppsala\nU03,Uppsala\n";
const VISITS: &str =
    "participant,visit,meal_start\nU07,V0,2025-03-02T08:30\nU03,V0,2025-03-02T08:30\nU07,V4,2025-09-03T08:00\n";

/// U07 V0 from the cobas e411 (its O.8 is not a draw time, so no window
/// check): every minute but 30, C-peptide at 0 below the LLOQ.
fn e411_upload() -> String {
    let mut t = "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20250302120000\rP|1|\r".to_owned();
    let values =
        [(-10, "0.26", "5.1"), (0, "<0.010", "5.3"), (15, "0.41", "7.0"), (60, "0.90", "9.9"), (90, "0.80", "8.2")];
    let mut n = 0;
    for (minute, cpep, gluc) in values.into_iter().chain([(120, "0.60", "6.5")]) {
        n += 1;
        t.push_str(&format!("O|{n}|U07-V0-T{minute}||^^^CPEP|R||20250302083000||||N||||1|||||||20250302100000|||F\r"));
        t.push_str(&format!("R|1|^^^CPEP|{cpep}|nmol/L||N||F||ADMIN|20250302100000|20250302101500|E1\r"));
        t.push_str(&format!("R|2|^^^GLUC|{gluc}|mmol/L||N||F||ADMIN|20250302100000|20250302101500|E1\r"));
    }
    // A sample ID that names no participant, with markup characters in it.
    t.push_str("O|9|NO<B>PE||^^^CPEP|R||20250302083000||||N||||1|||||||20250302100000|||F\r");
    t.push_str("R|1|^^^CPEP|0.5|nmol/L||N||F||ADMIN|20250302100000|20250302101500|E1\r");
    t.push_str("L|1|N\r");
    t
}

/// U03 V0 from the central lab: all seven minutes; the 30-min sample drawn
/// at 08:52 (OUT_OF_WINDOW) and glucose at 0 of 230 mg/dL (PRETEST_GLUCOSE),
/// both accepted and flagged.
fn central_lab() -> String {
    let mut t = "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20250312154500||ORU^R01^ORU_R01|C1|P|2.5.1\r\
PID|1||U03^^^TRIAL^PI\r"
        .to_owned();
    let draws = [
        (-10, "0820", "0.25", "95"),
        (0, "0830", "0.30", "230"),
        (15, "0845", "0.55", "150"),
        (30, "0852", "0.80", "190"),
        (60, "0930", "1.00", "170"),
        (90, "1000", "0.90", "140"),
        (120, "1030", "0.70", "120"),
    ];
    for (i, (minute, at, cpep, gluc)) in draws.into_iter().enumerate() {
        t.push_str(&format!("OBR|{}|U03-V0-T{minute}^STUDY||MMTT|||20250302{at}\r", i + 1));
        t.push_str(&format!("OBX|1|NM|1986-9^C peptide^LN||{cpep}|nmol/L|||||F\r"));
        t.push_str(&format!("OBX|2|NM|2345-7^Glucose^LN||{gluc}|mg/dL|||||F\r"));
    }
    t
}

fn study() -> TempStudy {
    let s = TempStudy::new(&[]);
    for (kind, name, content) in [("participants", "participants.csv", PARTICIPANTS), ("visits", "visits.csv", VISITS)]
    {
        let file = s.file(name, content);
        let out = s.run(&["import", kind, path(&file)]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let astm = s.file("e411.astm", &e411_upload());
    let hl7 = s.file("central.hl7", &central_lab());
    let out = s.run(&["ingest", path(&astm), path(&hl7)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    s
}

fn parse(html: &str) -> Document<'_> {
    let options = ParsingOptions { allow_dtd: true, ..ParsingOptions::default() };
    Document::parse_with_options(html, options).unwrap_or_else(|e| panic!("not well-formed: {e}\n{html}"))
}

fn class_is(n: &Node<'_, '_>, class: &str) -> bool {
    n.attribute("class").is_some_and(|c| c.split_whitespace().any(|x| x == class))
}

fn elements<'a, 'i>(root: Node<'a, 'i>, tag: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    root.descendants().filter(move |n| n.is_element() && n.tag_name().name() == tag)
}

/// All the text inside a node.
fn text_of(n: Node<'_, '_>) -> String {
    n.descendants().filter(|d| d.is_text()).filter_map(|d| d.text()).collect()
}

/// A self-contained page: UTF-8, no script, nothing loaded or linked from outside.
fn assert_self_contained(doc: &Document<'_>, html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>\n"), "{}", &html[..40]);
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "html");
    assert!(elements(root, "meta").any(|m| m.attribute("charset") == Some("utf-8")));
    assert_eq!(elements(root, "script").count(), 0);
    for n in root.descendants().filter(|n| n.is_element()) {
        for name in ["src", "href"] {
            if let Some(v) = n.attribute(name) {
                assert!(v.starts_with('#'), "{name}={v:?} leaves the page");
            }
        }
    }
    assert!(!html.contains("https:") && !html.contains("url("), "nothing fetched from outside");
}

/// The x pixel of the x-axis tick labelled `minute` in a curve (x labels are
/// centred on their tick; y labels are anchored at an end).
fn tick_x(svg: Node<'_, '_>, minute: i32) -> f64 {
    let label = minute.to_string();
    let ticks: Vec<f64> = elements(svg, "text")
        .filter(|t| t.attribute("text-anchor") == Some("middle") && text_of(*t).trim() == label)
        .map(|t| t.attribute("x").unwrap().parse().unwrap())
        .collect();
    assert!(!ticks.is_empty(), "no tick labelled {minute}");
    ticks[0]
}

/// The centres of the crosses drawn in `color` (two lines each).
fn crosses(svg: Node<'_, '_>, color: &str) -> Vec<f64> {
    elements(svg, "line")
        .filter(|l| l.attribute("stroke") == Some(color))
        .map(|l| {
            let x = |a: &str| -> f64 { l.attribute(a).unwrap().parse().unwrap() };
            (x("x1") + x("x2")) / 2.0
        })
        .collect()
}

/// The centres of the rings drawn in `color`.
fn rings(svg: Node<'_, '_>, color: &str) -> Vec<f64> {
    elements(svg, "circle")
        .filter(|c| c.attribute("stroke") == Some(color) && c.attribute("fill") == Some("none"))
        .map(|c| c.attribute("cx").unwrap().parse().unwrap())
        .collect()
}

fn first_svg<'a, 'i>(n: Node<'a, 'i>) -> Node<'a, 'i> {
    elements(n, "svg").next().unwrap()
}

fn filled_points(svg: Node<'_, '_>, color: &str) -> usize {
    elements(svg, "circle").filter(|c| c.attribute("fill") == Some(color)).count()
}

#[test]
fn the_mismatch_page_is_a_self_contained_document_grouped_by_participant_and_visit() {
    let s = study();
    let page = s.dir.path().join("mismatches.html");
    let out = s.run(&["report", "mismatches", "--format", "html", "--output", path(&page)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("open mismatches"), "{}", text(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    let doc = parse(&html);
    assert_self_contained(&doc, &html);
    let body = doc.root_element();
    assert_eq!(text_of(elements(body, "h1").next().unwrap()), "Mismatches (open) for study NCT02057211");

    // Sections: the unmatched row first, then participant code order (U03
    // before U07 though imported after it), visits in store order.
    let sections: Vec<Node> = elements(body, "section").filter(|n| class_is(n, "group")).collect();
    let keys: Vec<(Option<&str>, Option<&str>)> =
        sections.iter().map(|n| (n.attribute("data-participant"), n.attribute("data-visit"))).collect();
    assert_eq!(keys, [(None, None), (Some("U03"), Some("V0")), (Some("U07"), Some("V0")), (Some("U07"), Some("V4"))]);
    let title = |n: &Node| text_of(elements(*n, "h2").next().unwrap());
    assert_eq!(title(&sections[0]), "Not matched to a participant");
    assert_eq!(title(&sections[1]), "Participant U03, visit V0 (Baseline)");

    // The rows: code and detail cells, escaped data shown as text.
    let rows = |n: &Node| -> Vec<(String, String)> {
        elements(*n, "tbody")
            .flat_map(|b| elements(b, "tr"))
            .map(|tr| {
                let cell = |class: &str| text_of(elements(tr, "td").find(|td| class_is(td, class)).unwrap());
                (cell("code"), cell("detail"))
            })
            .collect()
    };
    let unmatched = rows(&sections[0]);
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    assert_eq!(unmatched[0].0, "UNKNOWN_SAMPLE");
    assert!(unmatched[0].1.contains("NO<B>PE"), "{unmatched:?}");
    assert_eq!(elements(body, "B").count(), 0, "the sample ID is text, not markup");
    assert!(html.contains("NO&lt;B&gt;PE"));
    assert_eq!(elements(sections[0], "svg").count(), 0, "no curve without a visit");

    let u03 = rows(&sections[1]);
    let codes: Vec<&str> = u03.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codes, ["PRETEST_GLUCOSE", "OUT_OF_WINDOW", "OUT_OF_WINDOW"], "0 glucose, 30 both: {u03:?}");
    assert_eq!(u03[1].1, "collected 08:52, 22 min after meal start; nominal 30 ± 3 min");
    let u07_v0 = rows(&sections[2]);
    assert_eq!(u07_v0.len(), 2, "C-peptide and glucose at minute 30: {u07_v0:?}");
    assert!(u07_v0.iter().all(|(c, d)| c == "MISSING_RESULT" && d.contains("minute 30 of visit V0")), "{u07_v0:?}");
    let u07_v4 = rows(&sections[3]);
    assert_eq!(u07_v4.len(), 14, "seven minutes × two analytes, nothing received");

    // The summary counts by code.
    let summary = elements(body, "table").find(|t| class_is(t, "summary")).unwrap();
    let counts: Vec<(String, String)> = elements(summary, "tr")
        .filter_map(|tr| {
            let cells: Vec<String> = elements(tr, "td").map(text_of).collect();
            (cells.len() == 2).then(|| (cells[0].clone(), cells[1].clone()))
        })
        .collect();
    let count = |code: &str| counts.iter().find(|(c, _)| c == code).map(|(_, n)| n.as_str());
    assert_eq!(count("MISSING_RESULT"), Some("16"));
    assert_eq!(count("OUT_OF_WINDOW"), Some("2"));
    assert_eq!(count("UNKNOWN_SAMPLE"), Some("1"));

    // One curve per visit section, with its markers.
    for n in &sections[1..] {
        assert_eq!(elements(*n, "svg").count(), 1, "{:?}", n.attribute("data-visit"));
    }
    // U03 V0: every point measured; the out-of-window values at 30 and the
    // pretest glucose at 0 are ringed.
    let u03_svg = first_svg(sections[1]);
    assert_eq!(filled_points(u03_svg, LEFT_COLOR), 7 + 1, "seven points and the legend's");
    assert_eq!(filled_points(u03_svg, RIGHT_COLOR), 7 + 1);
    assert!(crosses(u03_svg, LEFT_COLOR).is_empty() && crosses(u03_svg, RIGHT_COLOR).is_empty());
    let flagged = rings(u03_svg, FLAG_COLOR);
    for minute in [0, 30] {
        assert!(flagged.contains(&tick_x(u03_svg, minute)), "ring at minute {minute}: {flagged:?}");
    }
    assert_eq!(flagged.len(), 3 + 1, "three flagged points and the legend's sample");
    // U07 V0: minute 30 is missing for both analytes, marked on the axis;
    // the BLQ C-peptide at 0 is a hollow marker.
    let u07_svg = first_svg(sections[2]);
    let x30 = tick_x(u07_svg, 30);
    assert_eq!(crosses(u07_svg, LEFT_COLOR), [x30, x30], "one C-peptide cross, at minute 30");
    assert_eq!(crosses(u07_svg, RIGHT_COLOR), [x30, x30], "one glucose cross, at minute 30");
    assert_eq!(rings(u07_svg, LEFT_COLOR), [tick_x(u07_svg, 0)], "the censored C-peptide at 0");
    let caption = elements(sections[2], "figcaption").next().unwrap();
    let missing: Vec<(&str, &str)> = elements(caption, "span")
        .filter(|s| class_is(s, "missing"))
        .map(|s| (s.attribute("data-series").unwrap(), s.attribute("data-minutes").unwrap()))
        .collect();
    assert_eq!(missing, [("C-peptide", "30"), ("glucose", "30")]);
    assert!(text_of(caption).contains("C-peptide censored at 0 min."), "{}", text_of(caption));
    // U07 V4: nothing received, every minute crossed.
    assert_eq!(crosses(first_svg(sections[3]), LEFT_COLOR).len(), 2 * 7);

    // Standard output works too, and says the same.
    let out = s.run(&["report", "mismatches", "--format", "html"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let again = parse(&stdout);
    assert_eq!(elements(again.root_element(), "section").filter(|n| class_is(n, "group")).count(), 4);
}

#[test]
fn the_auc_page_has_a_table_and_a_curve_per_visit_in_participant_code_order() {
    let s = study();
    let page = s.dir.path().join("auc.html");
    let out = s.run(&["report", "auc", "--format", "html", "--output", path(&page)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    let doc = parse(&html);
    assert_self_contained(&doc, &html);
    let body = doc.root_element();

    let participants: Vec<&str> = elements(body, "section")
        .filter(|n| class_is(n, "participant"))
        .map(|n| n.attribute("data-participant").unwrap())
        .collect();
    assert_eq!(participants, ["U03", "U07"]);
    let visits: Vec<(&str, &str)> = elements(body, "section")
        .filter(|n| class_is(n, "visit"))
        .map(|n| (n.attribute("data-participant").unwrap(), n.attribute("data-visit").unwrap()))
        .collect();
    assert_eq!(visits, [("U03", "V0"), ("U07", "V0")], "only visits with results have AUC rows");
    for n in elements(body, "section").filter(|n| class_is(n, "visit")) {
        assert_eq!(elements(n, "svg").count(), 1);
    }

    // The settings the numbers depend on.
    let settings = text_of(elements(body, "dl").next().unwrap());
    assert!(settings.contains("minutes 0 to 120"), "{settings}");
    assert!(settings.contains("half_lloq") && settings.contains("c_peptide LLOQ 0.017 nmol/L"), "{settings}");
    assert!(settings.contains("none: a missing point gives no AUC"), "{settings}");
    assert!(settings.contains("V0 (Baseline)"), "{settings}");

    // The table: SPEC §5 fields, the baseline visit marked.
    let table: Vec<Vec<String>> = elements(body, "table")
        .filter(|t| class_is(t, "auc"))
        .flat_map(|t| elements(t, "tbody").flat_map(|b| elements(b, "tr")).collect::<Vec<_>>())
        .map(|tr| elements(tr, "td").map(text_of).collect())
        .collect();
    let keys: Vec<String> = table.iter().map(|r| format!("{} {} {}", r[0], r[1], r[2])).collect();
    assert_eq!(
        keys,
        ["U03 V0baseline c_peptide", "U03 V0baseline glucose", "U07 V0baseline c_peptide", "U07 V0baseline glucose"]
    );
    // 7.5·0.30 + 15·0.55 + 22.5·0.80 + 30·1.00 + 30·0.90 + 15·0.70 = 96, mean 0.8.
    assert_eq!(&table[0][3..10], ["nmol/L", "96", "0.8", "0.587786664902", "6", "yes", ""]);
    // U07 V0 lacks minute 30: no AUC with missing = "none".
    assert_eq!(&table[2][3..11], ["nmol/L", "", "", "", "5", "no", "30", ""]);
    let u03 = elements(body, "section").find(|n| class_is(n, "visit")).unwrap();
    let svg = elements(u03, "svg").next().unwrap();
    assert_eq!(rings(svg, FLAG_COLOR).len(), 3 + 1, "the out-of-window and pretest points, and the legend's");
}
