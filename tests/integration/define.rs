//! `labfeed export define` through the real binary, on the bundled demo
//! study: define.xml is well-formed Define-XML 2.1, every reference in it
//! resolves, and it states the names, labels and lengths the XPT files have.

use std::collections::BTreeSet;

use super::support::{demo_study, labfeed_on, text};

const DEF: &str = "http://www.cdisc.org/ns/def/v2.1";
const ODM: &str = "http://www.cdisc.org/ns/odm/v1.3";

/// (name, label, length) of each variable of an XPT file, from its NAMESTRs.
fn xpt_variables(bytes: &[u8]) -> Vec<(String, String, usize)> {
    let field = |a: usize, b: usize| String::from_utf8(bytes[a..b].to_vec()).unwrap().trim_end().to_owned();
    let count: usize = field(7 * 80 + 54, 7 * 80 + 58).parse().unwrap();
    (0..count)
        .map(|i| {
            let at = 8 * 80 + i * 140;
            let length = usize::from(u16::from_be_bytes([bytes[at + 4], bytes[at + 5]]));
            (field(at + 8, at + 16), field(at + 16, at + 56), length)
        })
        .collect()
}

fn description(node: roxmltree::Node<'_, '_>) -> String {
    node.descendants().find(|n| n.has_tag_name((ODM, "TranslatedText"))).and_then(|n| n.text()).unwrap().to_owned()
}

#[test]
fn export_define_is_define_xml_2_1_describing_the_xpt_files() {
    let tmp = tempfile::tempdir().unwrap();
    let config = demo_study(&tmp.path().join("demo"));
    let out = labfeed_on(&config, &["export", "define"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let xml = String::from_utf8(out.stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert!(root.has_tag_name((ODM, "ODM")));
    assert_eq!(root.attribute("ODMVersion"), Some("1.3.2"));
    assert_eq!(root.attribute((DEF, "Context")), Some("Submission"));
    let mdv = doc.descendants().find(|n| n.has_tag_name((ODM, "MetaDataVersion"))).unwrap();
    assert_eq!(mdv.attribute((DEF, "DefineVersion")), Some("2.1.0"));

    let all = |ns: &str, tag: &str| -> Vec<roxmltree::Node<'_, '_>> {
        doc.descendants().filter(|n| n.has_tag_name((ns, tag))).collect()
    };
    let oids = |ns: &str, tag: &str, attribute: &str| -> BTreeSet<String> {
        all(ns, tag).iter().map(|n| n.attribute(attribute).unwrap().to_owned()).collect()
    };
    let item_defs = oids(ODM, "ItemDef", "OID");
    let methods = oids(ODM, "MethodDef", "OID");
    let codelists = oids(ODM, "CodeList", "OID");
    let comments = oids(DEF, "CommentDef", "OID");
    let leaves = oids(DEF, "leaf", "ID");
    for item_ref in all(ODM, "ItemRef") {
        assert!(item_defs.contains(item_ref.attribute("ItemOID").unwrap()), "{item_ref:?}");
        if let Some(method) = item_ref.attribute("MethodOID") {
            assert!(methods.contains(method), "{method}");
        }
    }
    for r in all(ODM, "CodeListRef") {
        assert!(codelists.contains(r.attribute("CodeListOID").unwrap()));
    }
    for item in all(ODM, "ItemDef") {
        if let Some(comment) = item.attribute((DEF, "CommentOID")) {
            assert!(comments.contains(comment), "{comment}");
        }
        let origin = item.children().find(|n| n.has_tag_name((DEF, "Origin"))).unwrap();
        let derived = origin.attribute("Type") == Some("Derived");
        let oid = item.attribute("OID").unwrap();
        let has_method = all(ODM, "ItemRef")
            .iter()
            .any(|r| r.attribute("ItemOID") == Some(oid) && r.attribute("MethodOID").is_some());
        assert_eq!(derived, has_method, "{oid}: a derived variable, and only one, has its method");
    }

    // The datasets, with the names, labels and text lengths of the XPT files.
    let groups = all(ODM, "ItemGroupDef");
    let names: Vec<&str> = groups.iter().map(|g| g.attribute("Name").unwrap()).collect();
    assert_eq!(names, ["LB", "ADMMTT"]);
    for (group, (command, file)) in groups.iter().zip([("lb", "lb.xpt"), ("adam", "admmtt.xpt")]) {
        let path = tmp.path().join(file);
        let out = labfeed_on(&config, &["export", command, "--format", "xpt", "--output", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let xpt = xpt_variables(&std::fs::read(&path).unwrap());
        let refs: Vec<_> = group.children().filter(|n| n.has_tag_name((ODM, "ItemRef"))).collect();
        assert_eq!(refs.len(), xpt.len(), "{file}");
        for (item_ref, (name, label, length)) in refs.iter().zip(&xpt) {
            let oid = item_ref.attribute("ItemOID").unwrap();
            let def = all(ODM, "ItemDef").into_iter().find(|n| n.attribute("OID") == Some(oid)).unwrap();
            assert_eq!(def.attribute("Name"), Some(name.as_str()));
            assert_eq!(description(def), *label);
            if def.attribute("DataType") == Some("text") {
                assert_eq!(def.attribute("Length"), Some(length.to_string().as_str()), "{file} {name}");
            }
        }
        let leaf = group.children().find(|n| n.has_tag_name((DEF, "leaf"))).unwrap();
        assert_eq!(leaf.attribute(("http://www.w3.org/1999/xlink", "href")), Some(file));
        assert!(leaves.contains(group.attribute((DEF, "ArchiveLocationID")).unwrap()));
    }
}

#[test]
fn export_define_has_the_codelists_methods_and_null_comments_of_the_demo_study() {
    let tmp = tempfile::tempdir().unwrap();
    let config = demo_study(&tmp.path().join("demo"));
    let xml = String::from_utf8(labfeed_on(&config, &["export", "define"]).stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let by_oid = |oid: &str| doc.descendants().find(|n| n.attribute("OID") == Some(oid)).unwrap();
    let terms = |oid: &str| -> Vec<String> {
        by_oid(oid).children().filter_map(|n| n.attribute("CodedValue")).map(str::to_owned).collect()
    };
    assert_eq!(terms("CL.LBTESTCD"), ["CPEPTIDE", "GLUC"]);
    assert_eq!(terms("CL.NRIND"), ["NORMAL", "LOW", "HIGH", "ABNORMAL"]);
    assert!(terms("CL.UNIT").iter().any(|u| u == "nmol/L") && terms("CL.UNIT").iter().any(|u| u == "mmol/L"));
    assert_eq!(terms("CL.PARAMCD"), ["CPAUC", "CPAUCM", "CPLAUCM", "GLAUC", "GLAUCM"]);
    // The demo has no test marked not done: LBSTAT is null and says why.
    assert_eq!(by_oid("IT.LB.LBSTAT").attribute((DEF, "CommentOID")), Some("COM.LB.LBSTAT"));
    assert!(description(by_oid("COM.LB.LBSTAT")).ends_with("Null in every record: No test was recorded as not done."));
    let aval = description(by_oid("MT.ADMMTT.AVAL"));
    assert!(aval.contains("linear trapezoidal AUC over the nominal minutes 0, 15, 30, 60, 90, 120"), "{aval}");
    assert!(aval.contains("ln(CPAUCM + 1)") && aval.contains("half the LLOQ"), "{aval}");
    assert_eq!(by_oid("MT.ADMMTT.BLQIMPFL").attribute("Type"), Some("Imputation"));
}

#[test]
fn export_define_html_is_one_page_without_a_stylesheet_or_script() {
    let tmp = tempfile::tempdir().unwrap();
    let config = demo_study(&tmp.path().join("demo"));
    let path = tmp.path().join("define.html");
    let out = labfeed_on(&config, &["export", "define", "--format", "html", "--output", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{}: 2 datasets described\n", path.display()));
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("xml-stylesheet"));
    for needle in ["<h2 id=\"LB\">", "<h2 id=\"ADMMTT\">", "<td>LBLOBXFL</td>", "<td>BLQIMPFL</td>", "CPEPTIDE"] {
        assert!(html.contains(needle), "{needle}");
    }
}
