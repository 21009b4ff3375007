//! `report mismatches --format html` and `report auc --format html` through
//! the real binary: a small study is imported and ingested (ASTM and HL7),
//! then the page is opened with an XML parser and its structure checked:
//! sections in participant-code order, the mismatch rows, one chart per
//! participant with every visit on shared axes, a visit with nothing
//! received as one line, A4 printing, and nothing that reaches outside the page.

use labfeed::report::plot::FLAG_COLOR;
use roxmltree::{Document, Node, ParsingOptions};

use crate::support::{TempStudy, path, text};

/// Participants imported out of code order; U12 has no visit.
const PARTICIPANTS: &str = "participant,site\nU07,Uppsala\nU12,Uppsala\nU03,Uppsala\n";
const VISITS: &str = "participant,visit,meal_start\nU07,V0,2025-03-02T08:30\nU03,V0,2025-03-02T08:30\n\
                      U07,V4,2025-09-03T08:00\nU03,V4,2025-09-03T08:00\n";
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

/// U03 V4 from the central lab: every minute on time, C-peptide about 14
/// times lower than at V0 (0.07 against 1.00 at 60 min), glucose normal.
const U03_V4: [(i32, &str, &str, &str); 7] = [
    (-10, "0750", "0.018", "95"),
    (0, "0800", "0.021", "100"),
    (15, "0815", "0.039", "150"),
    (30, "0830", "0.057", "190"),
    (60, "0900", "0.07", "170"),
    (90, "0930", "0.064", "140"),
    (120, "1000", "0.05", "120"),
];

fn central_lab_v4() -> String {
    let mut t = "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20250912154500||ORU^R01^ORU_R01|C2|P|2.5.1\r\
PID|1||U03^^^TRIAL^PI\r"
        .to_owned();
    for (i, (minute, at, cpep, gluc)) in U03_V4.into_iter().enumerate() {
        t.push_str(&format!("OBR|{}|U03-V4-T{minute}^STUDY||MMTT|||20250903{at}\r", i + 1));
        t.push_str(&format!("OBX|1|NM|1986-9^C peptide^LN||{cpep}|nmol/L|||||F\r"));
        t.push_str(&format!("OBX|2|NM|2345-7^Glucose^LN||{gluc}|mg/dL|||||F\r"));
    }
    t
}

/// A long file name, to see it wrap at its separators and never mid-word.
const LONG_NAME: &str = "central-lab_export_2025-03-12_batch-0042.hl7";

fn study() -> TempStudy {
    let s = TempStudy::new(&[]);
    for (kind, name, content) in [("participants", "participants.csv", PARTICIPANTS), ("visits", "visits.csv", VISITS)]
    {
        let file = s.file(name, content);
        let out = s.run(&["import", kind, path(&file)]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let astm = s.file("e411.astm", &e411_upload());
    let hl7 = s.file(LONG_NAME, &central_lab());
    let v4 = s.file("central-v4.hl7", &central_lab_v4());
    let out = s.run(&["ingest", path(&astm), path(&hl7), path(&v4)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    s
}

/// Reject U03's late 30-min C-peptide (its OUT_OF_WINDOW flag), as `dm`; the flag's id.
fn reject_the_late_u03_draw(s: &TempStudy) -> String {
    let out = s.run(&["report", "mismatches", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    let late = csv
        .lines()
        .find(|l| l.contains(",OUT_OF_WINDOW,") && l.contains(",U03,V0,30,c_peptide,"))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("{csv}"))
        .to_owned();
    let out = s.run(&["resolve", &late, "--reject", "--reason", "drawn late", "--by", "dm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    late
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

fn with_class<'a, 'i>(root: Node<'a, 'i>, tag: &'a str, class: &'a str) -> Vec<Node<'a, 'i>> {
    elements(root, tag).filter(|n| class_is(n, class)).collect()
}

fn number(n: Node<'_, '_>, attr: &str) -> f64 {
    n.attribute(attr).unwrap().parse().unwrap()
}

/// The panel of one analyte in a chart.
fn panel<'a, 'i>(svg: Node<'a, 'i>, analyte: &str) -> Node<'a, 'i> {
    with_class(svg, "g", "panel").into_iter().find(|p| p.attribute("data-analyte") == Some(analyte)).unwrap()
}

/// One visit's series in a panel.
fn series<'a, 'i>(panel: Node<'a, 'i>, visit: &str) -> Option<Node<'a, 'i>> {
    with_class(panel, "g", "series").into_iter().find(|s| s.attribute("data-visit") == Some(visit))
}

/// The minutes of a series' marks of one kind (`missing`, `flag`, …).
fn minutes_of(series: Node<'_, '_>, class: &str) -> Vec<i32> {
    series
        .descendants()
        .filter(|n| n.is_element() && class_is(n, class))
        .map(|n| n.attribute("data-minute").unwrap().parse().unwrap())
        .collect()
}

/// The y pixel of `value` on a panel's axis, from its grid lines at 0 and at the top.
fn y_of(panel: Node<'_, '_>, value: f64) -> f64 {
    let grid = |label: &str| -> f64 {
        let line = with_class(panel, "line", "y-grid").into_iter().find(|l| l.attribute("data-value") == Some(label));
        number(line.unwrap(), "y1")
    };
    let top = panel.attribute("data-y-max").unwrap();
    let max: f64 = top.parse().unwrap();
    let (y0, y1) = (grid("0"), grid(top));
    y0 + (y1 - y0) * value / max
}

fn groups<'a, 'i>(body: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    with_class(body, "section", "group")
}

#[test]
fn the_mismatch_page_has_one_chart_per_participant_and_a_table_per_visit() {
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
    let style = text_of(elements(body, "style").next().unwrap());
    assert!(style.contains("@page { size: A4;"), "{style}");
    let meta = text_of(with_class(body, "p", "meta")[0]);
    assert!(meta.ends_with("Every time on this page is in the study's time zone, Europe/Stockholm."), "{meta}");

    // The unmatched row first, then one section per participant in code order
    // (U03 before U07 though imported after it), visits in configuration order.
    let participants: Vec<&str> =
        with_class(body, "section", "participant").iter().map(|n| n.attribute("data-participant").unwrap()).collect();
    assert_eq!(participants, ["U03", "U07"]);
    let keys: Vec<(Option<&str>, Option<&str>)> =
        groups(body).iter().map(|n| (n.attribute("data-participant"), n.attribute("data-visit"))).collect();
    assert_eq!(keys, [(None, None), (Some("U03"), Some("V0")), (Some("U07"), Some("V0")), (Some("U07"), Some("V4"))]);
    let sections = groups(body);
    assert_eq!(text_of(elements(sections[0], "h2").next().unwrap()), "Not matched to a participant");
    assert_eq!(text_of(elements(sections[1], "h3").next().unwrap()), "Visit V0 (Baseline)");
    let meal = text_of(with_class(sections[1], "p", "meal")[0]);
    assert_eq!(meal, "Meal start 2025-03-02 08:30 Europe/Stockholm.");

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
    let u03 = rows(&sections[1]);
    let codes: Vec<&str> = u03.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codes, ["PRETEST_GLUCOSE", "OUT_OF_WINDOW", "OUT_OF_WINDOW"], "0 glucose, 30 both: {u03:?}");
    assert_eq!(u03[1].1, "collected 08:52, 22 min after meal start; nominal 30 ± 3 min");
    let u07_v0 = rows(&sections[2]);
    assert_eq!(u07_v0.len(), 2, "C-peptide and glucose at minute 30: {u07_v0:?}");
    assert!(u07_v0.iter().all(|(c, d)| c == "MISSING_RESULT" && d.contains("minute 30 of visit V0")), "{u07_v0:?}");

    // U07 V4: nothing received, one line instead of fourteen rows.
    assert!(rows(&sections[3]).is_empty());
    let nothing = with_class(sections[3], "p", "nothing");
    assert_eq!(nothing.len(), 1);
    assert_eq!(
        text_of(nothing[0]),
        "V4: nothing received yet, 14 slots (MISSING_RESULT for every minute and analyte)."
    );
    assert_eq!(nothing[0].attribute("data-slots"), Some("14"));

    // Ten columns, to fit A4; received times are in the study zone, and the column says so.
    let table = with_class(sections[1], "table", "mismatches")[0];
    let head: Vec<String> = elements(table, "th").map(text_of).collect();
    assert_eq!(head.len(), 9, "{head:?}");
    assert_eq!(head[7], "from (received, Europe/Stockholm)");
    let received = with_class(table, "span", "received");
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|td| text_of(*td).ends_with(" Europe/Stockholm")), "{received:?}");
    // The long file name may wrap after its separators, never inside a word.
    let source = with_class(table, "span", "source")[0];
    assert!(text_of(source).ends_with(LONG_NAME), "{}", text_of(source));
    assert!(elements(source, "wbr").count() >= 6, "{source:?}");
    for piece in source.children().filter(|c| c.is_text()).filter_map(|c| c.text()) {
        assert!(piece.ends_with(['/', '_', '-', '.', ':']) || LONG_NAME.ends_with(piece), "split mid-word: {piece:?}");
    }

    // The summary counts by code: MISSING_RESULT still one per slot.
    let summary = with_class(body, "table", "summary")[0];
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

    // One chart per participant, none for the unmatched rows.
    assert_eq!(elements(sections[0], "svg").count(), 0, "no curve without a participant");
    let charts: Vec<Node> = with_class(body, "section", "participant")
        .iter()
        .map(|p| {
            let svgs: Vec<Node> = elements(*p, "svg").collect();
            assert_eq!(svgs.len(), 1, "{:?}", p.attribute("data-participant"));
            svgs[0]
        })
        .collect();

    // U03: V0 and V4 on the same axes. C-peptide circles, glucose squares.
    let cpep = panel(charts[0], "c_peptide");
    let gluc = panel(charts[0], "glucose");
    assert_eq!((cpep.attribute("data-shape"), gluc.attribute("data-shape")), (Some("circle"), Some("square")));
    assert_eq!(cpep.attribute("data-unit"), Some("nmol/L"));
    assert_eq!(gluc.attribute("data-unit"), Some("mmol/L"));
    assert!(text_of(with_class(cpep, "text", "panel-title")[0]).starts_with("C-peptide (nmol/L)"));
    for (p, shape) in [(cpep, "circle"), (gluc, "rect")] {
        for visit in ["V0", "V4"] {
            let s = series(p, visit).unwrap_or_else(|| panic!("no {visit} series"));
            let points: Vec<Node> = s.descendants().filter(|n| class_is(n, "point")).collect();
            assert_eq!(points.len(), 7, "{visit}");
            assert!(points.iter().all(|n| n.tag_name().name() == shape), "{visit}: {shape}");
        }
    }
    // One y range for both visits: 0 to 1 nmol/L, and each point where that axis puts it.
    assert_eq!((cpep.attribute("data-y-min"), cpep.attribute("data-y-max")), (Some("0"), Some("1")));
    for (visit, value) in [("V0", 1.0), ("V4", 0.07)] {
        let at60 = series(cpep, visit)
            .unwrap()
            .descendants()
            .find(|n| class_is(n, "point") && n.attribute("data-minute") == Some("60"))
            .unwrap();
        assert!((number(at60, "cy") - y_of(cpep, value)).abs() < 1.0, "{visit} at 60 on the shared axis");
    }
    // The baseline visit is named in the legend; visits differ by line style too.
    let legend: Vec<(String, Option<&str>)> = with_class(charts[0], "g", "legend-visit")
        .iter()
        .map(|g| (text_of(*g), g.attribute("data-baseline")))
        .collect();
    assert_eq!(
        legend,
        [("V0 (Baseline): baseline".to_owned(), Some("true")), ("V4 (2 years)".to_owned(), Some("false"))]
    );
    let dashes: Vec<&str> =
        ["V0", "V4"].iter().map(|v| series(cpep, v).unwrap().attribute("stroke-dasharray").unwrap()).collect();
    assert_ne!(dashes[0], dashes[1]);
    // Flags: the pretest glucose at 0 and both out-of-window values at 30, on V0.
    assert_eq!(minutes_of(series(cpep, "V0").unwrap(), "flag"), [30]);
    assert_eq!(minutes_of(series(gluc, "V0").unwrap(), "flag"), [0, 30]);
    assert!(with_class(charts[0], "circle", "flag").iter().all(|c| c.attribute("stroke") == Some(FLAG_COLOR)));

    // U07: V0 lacks minute 30 (a cross in each panel), its BLQ C-peptide at 0
    // is hollow; V4 has nothing and draws nothing, and says so.
    let cpep = panel(charts[1], "c_peptide");
    let v0 = series(cpep, "V0").unwrap();
    assert_eq!(minutes_of(v0, "missing"), [30]);
    assert_eq!(minutes_of(series(panel(charts[1], "glucose"), "V0").unwrap(), "missing"), [30]);
    assert_eq!(minutes_of(v0, "censored"), [0]);
    assert!(series(cpep, "V4").is_none(), "no empty series for V4");
    let v4 = with_class(charts[1], "g", "legend-visit").into_iter().find(|g| g.attribute("data-visit") == Some("V4"));
    assert_eq!(text_of(v4.unwrap()), "V4 (2 years): nothing received yet");
    let caption = elements(with_class(body, "section", "participant")[1], "figcaption").next().unwrap();
    assert!(text_of(caption).contains("V4 (2 years): nothing received yet."), "{}", text_of(caption));
    assert!(text_of(caption).contains("V0 C-peptide censored at 0 min."), "{}", text_of(caption));

    // Standard output works too, and says the same.
    let out = s.run(&["report", "mismatches", "--format", "html"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let again = parse(&stdout);
    assert_eq!(groups(again.root_element()).len(), 4);
}

#[test]
fn with_all_a_flagged_value_later_rejected_is_shown_withdrawn() {
    let s = study();
    let late = reject_the_late_u03_draw(&s);

    let out = s.run(&["report", "mismatches", "--format", "html", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let html = String::from_utf8(out.stdout).unwrap();
    let doc = parse(&html);
    let body = doc.root_element();
    let row = elements(body, "tr")
        .find(|tr| elements(*tr, "td").any(|td| class_is(&td, "id") && text_of(td) == late))
        .unwrap();
    let cell = |class: &str| text_of(elements(row, "td").find(|td| class_is(td, class)).unwrap());
    let span = |class: &str| text_of(elements(row, "span").find(|s| class_is(s, class)).unwrap());
    assert_eq!(span("effect"), "rejected: withdrawn from its slot");
    assert_eq!(span("state"), "resolved");
    assert!(
        cell("resolution").starts_with("resolved (reject) by dm.anna (Anna Data, data-manager) at "),
        "{}",
        cell("resolution")
    );
    assert!(cell("resolution").ends_with(" Europe/Stockholm: drawn late"), "{}", cell("resolution"));
    // On the chart the slot is empty now, marked as withdrawn, and no longer flagged.
    let svg = elements(with_class(body, "section", "participant")[0], "svg").next().unwrap();
    let v0 = series(panel(svg, "c_peptide"), "V0").unwrap();
    assert_eq!(minutes_of(v0, "withdrawn"), [30]);
    assert!(!minutes_of(v0, "point").contains(&30));
    assert!(minutes_of(v0, "flag").is_empty());

    // So does the AUC page's chart.
    let out = s.run(&["report", "auc", "--format", "html"]);
    let html = String::from_utf8(out.stdout).unwrap();
    let doc = parse(&html);
    let svg = elements(with_class(doc.root_element(), "section", "participant")[0], "svg").next().unwrap();
    let v0 = series(panel(svg, "c_peptide"), "V0").unwrap();
    assert_eq!(minutes_of(v0, "withdrawn"), [30]);
    assert!(minutes_of(v0, "missing").is_empty());

    // The text says the same.
    let out = s.run(&["report", "mismatches", "--all"]);
    let report = String::from_utf8(out.stdout).unwrap();
    let decision = format!("#{late} OUT_OF_WINDOW");
    let at = report.find(&decision).unwrap_or_else(|| panic!("{report}"));
    let next: Vec<&str> = report[at..].lines().skip(1).take(2).collect();
    assert!(next[0].ends_with(" Europe/Stockholm: drawn late"), "{next:?}");
    assert_eq!(next[1], "      now rejected: withdrawn from its slot", "{next:?}");
}

/// Review r3: a printed table cut off a long token with no separator (a
/// 70-character file name, a 44-character sample ID), and the ISO meal start
/// of a MISSING_RESULT detail split as `08:` / `45`. Such cells now wrap
/// anywhere as a last resort (separators stay the preferred places), the
/// meal start reads as every time on the page, and nothing breaks inside a
/// number or time.
#[test]
fn long_tokens_wrap_rather_than_be_cut_off_and_times_stay_whole() {
    let s = study();
    let name = "cobase411exportfromthelaboratoryinformationsystemnightlybatchrun2026xy";
    assert_eq!(name.len(), 70);
    let sample = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH";
    assert_eq!(sample.len(), 44);
    let upload = format!(
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20250302120000\rP|1|\r\
         O|1|{sample}||^^^CPEP|R||20250302083000||||N||||1|||||||20250302100000|||F\r\
         R|1|^^^CPEP|0.5|nmol/L||N||F||ADMIN|20250302100000|20250302101500|E1\rL|1|N\r"
    );
    let file = s.file(name, &upload);
    let out = s.run(&["ingest", path(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = s.run(&["report", "mismatches", "--format", "html"]);
    let html = String::from_utf8(out.stdout).unwrap();
    let doc = parse(&html);
    let body = doc.root_element();
    let style = text_of(elements(body, "style").next().unwrap());
    assert!(
        style.contains("td.sample, td.reported, td.detail, td.from, td.resolution { overflow-wrap: anywhere; }"),
        "{style}"
    );
    let row = elements(body, "tr")
        .find(|tr| elements(*tr, "td").any(|td| class_is(&td, "sample") && text_of(td) == sample))
        .unwrap_or_else(|| panic!("the sample ID whole in its cell: {html}"));
    let from = elements(row, "td").find(|td| class_is(td, "from")).map(text_of).unwrap_or_default();
    assert!(from.contains(name), "{from}");
    // U07 V4: nothing received; U07 V0 lacks minute 30: its detail names the meal start as the text report does.
    let detail = elements(body, "tr")
        .filter(|tr| tr.attribute("data-code") == Some("MISSING_RESULT"))
        .filter_map(|tr| elements(tr, "td").find(|td| class_is(td, "detail")).map(text_of))
        .find(|d| d.contains("minute 30 "))
        .unwrap_or_else(|| panic!("{html}"));
    assert!(detail.contains("(meal start 2025-03-02 08:30 Europe/Stockholm)"), "{detail}");
    assert!(!detail.contains("2025-03-02T08:30"), "{detail}");
    // No break opportunity between two digits anywhere on the page.
    let split = html.match_indices("<wbr/>").filter(|(i, _)| {
        let digit = |at: Option<usize>| at.and_then(|at| html.as_bytes().get(at)).is_some_and(u8::is_ascii_digit);
        digit(i.checked_sub(2)) && digit(Some(i + 6))
    });
    assert_eq!(split.count(), 0, "{html}");
}

/// Review r3: a withdrawn slot's boxed cross sat inside the plot, on top of
/// another visit's low value at the same minute, reading as if that value
/// was withdrawn. Missing and withdrawn marks now sit in a strip under the
/// minute axis, one row per visit, named at its left in the visit's colour.
#[test]
fn missing_and_withdrawn_marks_sit_under_the_axis_in_their_visits_row() {
    let s = study();
    reject_the_late_u03_draw(&s);
    for args in [&["report", "mismatches", "--format", "html", "--all"][..], &["report", "auc", "--format", "html"]] {
        let out = s.run(args);
        let html = String::from_utf8(out.stdout).unwrap();
        let doc = parse(&html);
        let mut marks = 0;
        for svg in elements(doc.root_element(), "svg") {
            for panel in with_class(svg, "g", "panel") {
                let axis = y_of(panel, 0.0);
                let lowest_point = elements(panel, "circle")
                    .chain(elements(panel, "rect"))
                    .filter(|n| class_is(n, "point"))
                    .map(|n| n.attribute("cy").or(n.attribute("y")).unwrap().parse::<f64>().unwrap())
                    .fold(f64::MIN, f64::max);
                assert!(lowest_point <= axis + 5.0, "values are drawn above the axis");
                for g in with_class(panel, "g", "series") {
                    let visit = g.attribute("data-visit").unwrap();
                    let label = with_class(panel, "text", "strip-label")
                        .into_iter()
                        .find(|t| t.attribute("data-visit") == Some(visit));
                    for kind in ["missing", "withdrawn"] {
                        for mark in with_class(g, "g", kind) {
                            marks += 1;
                            let line = elements(mark, "line").next().unwrap();
                            let y = (number(line, "y1") + number(line, "y2")) / 2.0;
                            assert!(
                                y > axis + 16.0,
                                "{kind} mark at {y}, under the minute labels of the axis at {axis}"
                            );
                            let label = label.unwrap_or_else(|| panic!("a strip row named {visit}"));
                            assert_eq!(number(label, "y") - 4.0, y, "in {visit}'s row");
                            assert_eq!(text_of(label), format!("{visit} missing"));
                        }
                    }
                }
            }
        }
        assert!(marks >= 2, "the withdrawn slot and the missing ones are marked: {marks}");
    }
}

#[test]
fn the_auc_page_has_a_table_and_one_chart_per_participant_in_code_order() {
    let s = study();
    let page = s.dir.path().join("auc.html");
    let out = s.run(&["report", "auc", "--format", "html", "--output", path(&page)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    let doc = parse(&html);
    assert_self_contained(&doc, &html);
    let body = doc.root_element();

    let sections = with_class(body, "section", "participant");
    let participants: Vec<&str> = sections.iter().map(|n| n.attribute("data-participant").unwrap()).collect();
    assert_eq!(participants, ["U03", "U07"]);
    for n in &sections {
        assert_eq!(elements(*n, "svg").count(), 1, "one chart per participant");
    }
    let svg = elements(sections[0], "svg").next().unwrap();
    let cpep = panel(svg, "c_peptide");
    assert!(series(cpep, "V0").is_some() && series(cpep, "V4").is_some(), "U03's visits share one chart");
    assert_eq!(cpep.attribute("data-y-max"), Some("1"));
    let flags: usize = with_class(svg, "circle", "flag").len();
    assert_eq!(flags, 3, "the out-of-window and pretest points");

    // The settings the numbers depend on.
    let settings = text_of(elements(body, "dl").next().unwrap());
    assert!(settings.contains("minutes 0 to 120"), "{settings}");
    assert!(settings.contains("half_lloq") && settings.contains("c_peptide LLOQ 0.017 nmol/L"), "{settings}");
    assert!(settings.contains("none: a missing point gives no AUC"), "{settings}");
    assert!(settings.contains("V0 (Baseline)"), "{settings}");

    // The table: SPEC §5 fields with units, the baseline visit marked.
    let head: Vec<String> = elements(with_class(body, "table", "auc")[0], "th").map(text_of).collect();
    assert_eq!(head[3..6], ["unit", "auc (unit·min)", "auc_mean (unit)"]);
    let table: Vec<Vec<String>> = with_class(body, "table", "auc")
        .into_iter()
        .flat_map(|t| elements(t, "tbody").flat_map(|b| elements(b, "tr")).collect::<Vec<_>>())
        .map(|tr| elements(tr, "td").map(text_of).collect())
        .collect();
    let keys: Vec<String> = table.iter().map(|r| format!("{} {} {}", r[0], r[1], r[2])).collect();
    assert_eq!(
        keys,
        [
            "U03 V0baseline c_peptide",
            "U03 V0baseline glucose",
            "U03 V4 c_peptide",
            "U03 V4 glucose",
            "U07 V0baseline c_peptide",
            "U07 V0baseline glucose",
            "U07 V4 c_peptide",
            "U07 V4 glucose"
        ]
    );
    // 7.5·0.30 + 15·0.55 + 22.5·0.80 + 30·1.00 + 30·0.90 + 15·0.70 = 96, mean 0.8.
    assert_eq!(&table[0][3..10], ["nmol/L", "96", "0.8", "0.587786664902", "6", "yes", ""]);
    // U07 V0 lacks minute 30: no AUC with missing = "none".
    assert_eq!(&table[4][3..11], ["nmol/L", "", "", "", "5", "no", "30", ""]);
    // U07 V4's meal has started and nothing was received: a row all the same.
    assert_eq!(&table[6][3..11], ["nmol/L", "", "", "", "0", "no", "0, 15, 30, 60, 90, 120", ""]);
}

/// The study-wide chart of Δ AUC mean on the demo study: every participant
/// along x in code order, each mark at `report auc`'s delta_auc_mean, a fall
/// below the no-change line.
#[test]
fn the_auc_page_plots_every_participants_change_from_baseline_in_code_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let bin = env!("CARGO_BIN_EXE_labfeed");
    let out = std::process::Command::new(bin).arg("demo").arg("--dir").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .env_remove("LABFEED_CONFIG")
            .arg("--config")
            .arg(dir.join("labfeed.toml"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let html = run(&["report", "auc", "--format", "html"]);
    let doc = parse(&html);
    assert_self_contained(&doc, &html);
    let section = elements(doc.root_element(), "section").find(|s| s.attribute("id") == Some("delta-auc")).unwrap();
    let svg = elements(section, "svg").next().unwrap();
    let labels: Vec<String> = with_class(svg, "text", "x-tick").into_iter().map(text_of).collect();
    assert_eq!(labels[..4], ["U01", "U02", "U03", "U04"], "code order, in each panel");

    let csv = crate::support::csv_rows(&run(&["report", "auc", "--format", "csv"]));
    for analyte in ["c_peptide", "glucose"] {
        let panel =
            with_class(svg, "g", "delta-panel").into_iter().find(|p| p.attribute("data-analyte") == Some(analyte));
        let panel = panel.unwrap();
        let marks: Vec<(String, String)> = panel
            .descendants()
            .filter(|n| n.is_element() && class_is(n, "delta"))
            .map(|m| {
                (m.attribute("data-participant").unwrap().to_owned(), m.attribute("data-value").unwrap().to_owned())
            })
            .collect();
        let want: Vec<(String, String)> = csv[1..]
            .iter()
            .filter(|r| r[2] == analyte && !r[9].is_empty())
            .map(|r| (r[0].clone(), r[9].clone()))
            .collect();
        assert_eq!(marks, want, "{analyte}");
        assert!(!want.is_empty());
        // A fall is drawn below the no-change line, a rise above it.
        let zero = with_class(panel, "line", "y-grid").into_iter().find(|l| l.attribute("data-value") == Some("0"));
        let zero = number(zero.unwrap(), "y1");
        for mark in panel.descendants().filter(|n| n.is_element() && class_is(n, "delta")) {
            let value: f64 = mark.attribute("data-value").unwrap().parse().unwrap();
            let y = mark.attribute("cy").or(mark.attribute("y")).map(|v| v.parse::<f64>().unwrap()).unwrap();
            assert_eq!(y > zero - 5.0, value < 0.0, "{value} at {y}, zero at {zero}");
        }
    }
}
