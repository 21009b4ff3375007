//! Which keys the configuration file may hold, and of what kind (SPEC §3).
//!
//! The parsed TOML is walked against this description before it is
//! deserialized: serde stops at the first problem and names Rust types
//! (`expected u32`), while a data manager fixing a file wants every unknown
//! key and every wrongly typed value at once, in plain words.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// What a value must be.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A TOML integer within `min..=max` (the range of the field's type).
    Whole {
        min: i128,
        max: i128,
    },
    /// A TOML float or integer.
    Number,
    Text,
    Bool,
    /// Text, one of these spellings.
    OneOf(&'static [&'static str]),
    List(&'static Kind),
    /// `[low, high]`: exactly two numbers.
    Pair,
    Table(&'static [Field]),
    /// `[[name]]` entries (an array of tables).
    Tables(&'static [Field]),
    /// A table whose keys are free (names, test codes, minutes), each value of one kind.
    Map(&'static Kind),
}

/// One known key of a table.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, required: true }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, required: false }
}

const U8: Kind = Kind::Whole { min: 0, max: u8::MAX as i128 };
const U32: Kind = Kind::Whole { min: 0, max: u32::MAX as i128 };
const U64: Kind = Kind::Whole { min: 0, max: u64::MAX as i128 };
const I32: Kind = Kind::Whole { min: i32::MIN as i128, max: i32::MAX as i128 };

const STUDY: &[Field] = &[req("id", Kind::Text), req("timezone", Kind::Text)];
const STORAGE: &[Field] = &[req("database", Kind::Text), opt("instance", Kind::Text), opt("state_dir", Kind::Text)];
const AUDIT: &[Field] = &[opt("key_file", Kind::Text), opt("head_file", Kind::Text)];
const WEB: &[Field] = &[opt("address", Kind::Text), opt("tls_cert", Kind::Text), opt("tls_key", Kind::Text)];
const WATCH: &[Field] = &[
    req("inbox", Kind::Text),
    req("archive", Kind::Text),
    req("quarantine", Kind::Text),
    opt("mode", Kind::OneOf(&["inotify", "poll"])),
    opt("poll_interval_seconds", U64),
    opt("settle_seconds", Kind::Number),
    opt("max_file_size_mib", U64),
];
const LOGGING: &[Field] = &[opt("level", Kind::Text)];
const ANALYTE: &[Field] = &[
    req("unit", Kind::Text),
    opt("lloq", Kind::Number),
    opt("plausible", Kind::Pair),
    opt("specimen", Kind::Text),
    opt("test_code", Kind::Text),
    opt("test_name", Kind::Text),
];
const INSTRUMENT: &[Field] = &[
    req("name", Kind::Text),
    req("sender", Kind::Text),
    opt("decimal_comma", Kind::Bool),
    opt("tests", Kind::Map(&Kind::Text)),
    opt("trust_collection_time", Kind::Bool),
    opt("link_style", Kind::OneOf(&["framed", "simplified", "unframed"])),
    opt("max_frame_bytes", U64),
    opt("keep_comments", Kind::Bool),
];
const SERIAL: &[Field] = &[
    req("instrument", Kind::Text),
    req("path", Kind::Text),
    opt("baud", U32),
    opt("data_bits", U8),
    opt("parity", Kind::OneOf(&["none", "even", "odd"])),
    opt("stop_bits", U8),
    opt("flow_control", Kind::OneOf(&["none", "software", "hardware"])),
];
const LISTEN: &[Field] = &[
    req("instrument", Kind::Text),
    req("address", Kind::Text),
    opt("protocol", Kind::OneOf(&["astm", "mllp"])),
    opt("allow", Kind::List(&Kind::Text)),
    opt("idle_seconds", U64),
    opt("max_bytes_per_hour", U64),
];
const MMTT: &[Field] = &[
    opt("timepoints", Kind::List(&I32)),
    opt("window_minutes", U32),
    opt("windows", Kind::Map(&U32)),
    opt("auc_from", I32),
    opt("auc_to", I32),
    opt("baseline", Kind::OneOf(&["zero", "mean"])),
    opt("blq", Kind::OneOf(&["half_lloq", "lloq", "zero"])),
    opt("missing", Kind::OneOf(&["none", "interpolate"])),
];
const VISIT: &[Field] = &[req("code", Kind::Text), req("name", Kind::Text), opt("baseline", Kind::Bool)];
const SAMPLES: &[Field] = &[opt("id_pattern", Kind::Text)];

/// The whole file.
pub const ROOT: &[Field] = &[
    req("study", Kind::Table(STUDY)),
    req("storage", Kind::Table(STORAGE)),
    opt("audit", Kind::Table(AUDIT)),
    opt("web", Kind::Table(WEB)),
    opt("watch", Kind::Table(WATCH)),
    opt("logging", Kind::Table(LOGGING)),
    opt("analytes", Kind::Map(&Kind::Table(ANALYTE))),
    opt("instruments", Kind::Tables(INSTRUMENT)),
    opt("serial", Kind::Tables(SERIAL)),
    opt("listen", Kind::Tables(LISTEN)),
    opt("mmtt", Kind::Table(MMTT)),
    opt("visits", Kind::Tables(VISIT)),
    opt("samples", Kind::Table(SAMPLES)),
];

/// A problem found by the walk: the byte offset it concerns, the dotted key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub offset: usize,
    pub key: String,
    pub message: String,
}

/// Every unknown key, wrongly typed value and missing required key in `root`.
pub fn check(root: &Spanned<DeTable<'_>>) -> Vec<Finding> {
    let mut found = Vec::new();
    table(root.get_ref(), root.span(), ROOT, "", &mut found);
    found.sort_by_key(|f| f.offset);
    found
}

/// The 1-based line where the key at `path` (e.g. `["watch", "inbox"]`) is
/// written, for problems found outside the file; 0 when it is not there.
pub fn key_line(text: &str, path: &[&str]) -> usize {
    let Ok(root) = DeTable::parse(text) else { return 0 };
    let mut table = root.get_ref();
    let mut offset = None;
    for (i, name) in path.iter().enumerate() {
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == name) else { return 0 };
        offset = Some(key.span().start);
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ if i + 1 < path.len() => return 0,
            _ => {}
        }
    }
    offset.map_or(0, |o| 1 + text.as_bytes().get(..o).map_or(0, |head| head.iter().filter(|&&b| b == b'\n').count()))
}

/// The byte offset where the dotted `key` (`instruments[0].tests.CPEP`) is
/// written, even inside an inline table; when the key itself is not written
/// (a default), where its nearest written parent is. `None` when not even
/// the first part is written.
pub fn key_offset(root: &DeTable<'_>, key: &str) -> Option<usize> {
    let mut table = root;
    let mut rest = key;
    let mut found = None;
    loop {
        // The longest name here that `rest` starts with: names may hold dots.
        let matched = table
            .iter()
            .filter_map(|(k, v)| {
                let after = rest.strip_prefix(k.get_ref().as_ref())?;
                (after.is_empty() || after.starts_with(['.', '['])).then_some((k, v, after))
            })
            .max_by_key(|(k, _, _)| k.get_ref().len());
        let Some((k, mut value, after)) = matched else { return found };
        found = Some(k.span().start);
        rest = after;
        while let Some(after) = rest.strip_prefix('[') {
            let Some((index, tail)) = after.split_once(']') else { return found };
            let (Ok(i), DeValue::Array(items)) = (index.parse::<usize>(), value.get_ref()) else { return found };
            let Some(item) = items.get(i) else { return found };
            if !item.span().is_empty() {
                found = Some(item.span().start);
            }
            value = item;
            rest = tail;
        }
        let Some(tail) = rest.strip_prefix('.') else { return found };
        let DeValue::Table(inner) = value.get_ref() else { return found };
        table = inner;
        rest = tail;
    }
}

/// Keys SPEC §3 defines for features this version does not have yet: they
/// are accepted, so one file serves several versions, but do nothing.
pub const NOT_YET_USED: &[&[&str]] = &[];

/// Where each of `paths` is written in `text` (`*` matches every entry of
/// an array of tables): the dotted key and its 1-based line.
pub fn keys_present(text: &str, paths: &[&[&str]]) -> Vec<(String, usize)> {
    let Ok(root) = DeTable::parse(text) else { return Vec::new() };
    let line =
        |offset: usize| 1 + text.as_bytes().get(..offset).map_or(0, |h| h.iter().filter(|&&b| b == b'\n').count());
    let mut found = Vec::new();
    for path in paths {
        let mut here: Vec<(String, &DeTable<'_>)> = vec![(String::new(), root.get_ref())];
        let mut steps = path.iter().peekable();
        while let Some(name) = steps.next() {
            let expand = steps.next_if_eq(&&"*").is_some();
            let last = steps.peek().is_none();
            let mut next = Vec::new();
            for (prefix, table) in &here {
                let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == name) else { continue };
                let dotted = join(prefix, name);
                if last {
                    found.push((dotted.clone(), line(key.span().start)));
                }
                match value.get_ref() {
                    DeValue::Table(t) if !expand => next.push((dotted, t)),
                    DeValue::Array(items) if expand => {
                        for (i, item) in items.iter().enumerate() {
                            if let DeValue::Table(t) = item.get_ref() {
                                next.push((format!("{dotted}[{i}]"), t));
                            }
                        }
                    }
                    _ => {}
                }
            }
            here = next;
        }
    }
    found.sort_by_key(|(_, line)| *line);
    found
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

fn table(t: &DeTable<'_>, span: Range<usize>, fields: &[Field], prefix: &str, found: &mut Vec<Finding>) {
    // A misspelt required key is reported once, as the unknown key that suggests it.
    let mut suggested = Vec::new();
    for (key, value) in t.iter() {
        let name = key.get_ref().as_ref();
        let path = join(prefix, name);
        match fields.iter().find(|f| f.name == name) {
            Some(field) => self::value(value, field.kind, &path, key.span().start, found),
            None => {
                let near = nearest(name, fields.iter().map(|f| f.name));
                suggested.extend(near);
                found.push(Finding { offset: key.span().start, key: path, message: unknown_key(near, fields) })
            }
        }
    }
    for field in fields.iter().filter(|f| f.required) {
        if !t.contains_key(field.name) && !suggested.contains(&field.name) {
            let key = join(prefix, field.name);
            let message = match field.kind {
                Kind::Table(_) => format!("the [{key}] table is missing; it is required"),
                kind => format!("is missing; it is required ({})", describe(kind)),
            };
            found.push(Finding { offset: span.start, key, message });
        }
    }
}

/// Check one value; `at` is where its key is written (problems point there).
fn value(v: &Spanned<DeValue<'_>>, kind: Kind, path: &str, at: usize, found: &mut Vec<Finding>) {
    let wrong = |found: &mut Vec<Finding>| {
        found.push(Finding {
            offset: at,
            key: path.to_owned(),
            message: format!("must be {}, not {}", describe(kind), what_is(v.get_ref())),
        })
    };
    match (kind, v.get_ref()) {
        (Kind::Whole { min, max }, DeValue::Integer(i)) => {
            let n = i128::from_str_radix(i.as_str(), i.radix()).ok();
            let message = match n {
                Some(n) if (min..=max).contains(&n) => None,
                Some(n) if n < 0 && min == 0 => Some(format!("{i} is negative: must be a whole number, 0 or more")),
                _ => Some(format!("{i} is out of range: must be a whole number from {min} to {max}")),
            };
            if let Some(message) = message {
                found.push(Finding { offset: at, key: path.to_owned(), message });
            }
        }
        (Kind::Number, DeValue::Integer(_) | DeValue::Float(_)) | (Kind::Text, DeValue::String(_)) => {}
        (Kind::Bool, DeValue::Boolean(_)) => {}
        (Kind::OneOf(allowed), DeValue::String(s)) => {
            if !allowed.contains(&s.as_ref()) {
                let mut message = format!("{:?} is not allowed: must be {}", s.as_ref(), describe(kind));
                if let Some(near) = nearest(s, allowed.iter().copied()) {
                    message.push_str(&format!(" (did you mean {near:?}?)"));
                }
                found.push(Finding { offset: at, key: path.to_owned(), message });
            }
        }
        (Kind::List(item), DeValue::Array(items)) => {
            for (i, element) in items.iter().enumerate() {
                self::value(element, *item, &format!("{path}[{i}]"), element.span().start, found);
            }
        }
        (Kind::Pair, DeValue::Array(items)) => {
            let numbers = items.iter().all(|e| matches!(e.get_ref(), DeValue::Integer(_) | DeValue::Float(_)));
            if items.len() != 2 || !numbers {
                wrong(found);
            }
        }
        (Kind::Table(fields), DeValue::Table(t)) => table(t, v.span(), fields, path, found),
        (Kind::Tables(fields), DeValue::Array(items)) => {
            for (i, element) in items.iter().enumerate() {
                let element_path = format!("{path}[{i}]");
                match element.get_ref() {
                    DeValue::Table(t) => table(t, element.span(), fields, &element_path, found),
                    other => found.push(Finding {
                        offset: element.span().start,
                        key: element_path,
                        message: format!("must be a table, not {}", what_is(other)),
                    }),
                }
            }
        }
        (Kind::Map(item), DeValue::Table(t)) => {
            for (key, element) in t.iter() {
                self::value(element, *item, &join(path, key.get_ref()), key.span().start, found);
            }
        }
        _ => wrong(found),
    }
}

/// The kind in plain words, as the file's reader would say it.
pub fn describe(kind: Kind) -> String {
    match kind {
        Kind::Whole { .. } => "a whole number".to_owned(),
        Kind::Number => "a number".to_owned(),
        Kind::Text => "text".to_owned(),
        Kind::Bool => "true or false".to_owned(),
        Kind::OneOf(allowed) => {
            let quoted: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
            format!("one of {}", quoted.join(", "))
        }
        Kind::List(item) => format!("a list of {}", plural(*item)),
        Kind::Pair => "a list of two numbers [low, high]".to_owned(),
        Kind::Table(_) | Kind::Map(_) => "a table".to_owned(),
        Kind::Tables(_) => "a list of tables ([[…]] entries)".to_owned(),
    }
}

fn plural(kind: Kind) -> String {
    match kind {
        Kind::Whole { .. } => "whole numbers".to_owned(),
        Kind::Number => "numbers".to_owned(),
        Kind::Text | Kind::OneOf(_) => "text values".to_owned(),
        Kind::Bool => "true or false values".to_owned(),
        Kind::List(_) | Kind::Pair => "lists".to_owned(),
        Kind::Table(_) | Kind::Map(_) | Kind::Tables(_) => "tables".to_owned(),
    }
}

/// What a value is, in the same words, quoting short scalars.
fn what_is(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) if s.chars().count() <= 40 => format!("text ({:?})", s.as_ref()),
        DeValue::String(_) => "text".to_owned(),
        DeValue::Integer(i) => format!("the whole number {i}"),
        DeValue::Float(f) => format!("the number {f}"),
        DeValue::Boolean(b) => format!("{b}"),
        DeValue::Datetime(d) => format!("the date-time {d}"),
        DeValue::Array(_) => "a list".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

fn unknown_key(near: Option<&str>, fields: &[Field]) -> String {
    match near {
        Some(near) => format!("unknown key; did you mean `{near}`?"),
        None => {
            let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
            format!("unknown key; the keys here are {}", known.join(", "))
        }
    }
}

/// The candidate closest to `word` by edits, when close enough to be a typo.
fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates.map(|c| (edit_distance(&word, &c.to_lowercase()), c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}

/// Levenshtein distance over characters (insert, delete, substitute, each 1).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous.get(j).map_or(usize::MAX, |d| d + usize::from(ca != *cb));
            let delete = previous.get(j + 1).map_or(usize::MAX, |d| d + 1);
            let insert = current.last().map_or(usize::MAX, |d| d + 1);
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(text: &str) -> Vec<Finding> {
        check(&DeTable::parse(text).unwrap())
    }

    const MINIMAL: &str = "[study]\nid = \"X\"\ntimezone = \"UTC\"\n[storage]\ndatabase = \"x.db\"\n";

    #[test]
    fn key_lines_are_found_for_messages_about_the_disk() {
        let text = "# c\n[storage]\ndatabase = \"x\"\n[watch]\n\ninbox = \"i\"\n";
        assert_eq!(key_line(text, &["storage", "database"]), 3);
        assert_eq!(key_line(text, &["watch", "inbox"]), 6);
        assert_eq!(key_line(text, &["watch", "archive"]), 0);
        assert_eq!(key_line("not toml [", &["watch"]), 0);
    }

    #[test]
    fn key_offsets_reach_into_inline_tables_and_arrays_of_tables() {
        let text = "[[instruments]]\nname = \"a\"\n[[instruments]]\nname = \"b\"\n\
                    tests = { \"CP.EP\" = \"x\",\n \"GLUC\" = \"y\" }\n[mmtt]\nwindows = { \"45\" = 3 }\n";
        let root = DeTable::parse(text).unwrap();
        let line = |key: &str| key_offset(root.get_ref(), key).map(|o| text[..o].matches('\n').count() + 1);
        assert_eq!(line("instruments[1].tests.CP.EP"), Some(5));
        assert_eq!(line("instruments[1].tests.GLUC"), Some(6));
        assert_eq!(line("instruments[1].name"), Some(4));
        assert_eq!(line("mmtt.windows.45"), Some(8));
        // Not written: the nearest written parent.
        assert_eq!(line("mmtt.auc_to"), Some(7));
        assert_eq!(line("instruments[1].sender"), Some(3));
        assert_eq!(line("samples.id_pattern"), None);
    }

    #[test]
    fn keys_not_yet_used_are_found_with_their_lines() {
        let text = format!(
            "{MINIMAL}instance = \"a\"\n[[listen]]\ninstrument = \"a\"\naddress = \"b\"\n\
             [[listen]]\ninstrument = \"a\"\naddress = \"c\"\nallow = []\n[web]\naddress = \"x\"\n"
        );
        assert_eq!(
            keys_present(&text, &[&["storage", "instance"], &["web"], &["listen", "*", "allow"]]),
            [("storage.instance".to_owned(), 6), ("listen[1].allow".to_owned(), 13), ("web".to_owned(), 14)]
        );
    }

    #[test]
    fn distance_and_suggestions() {
        assert_eq!(edit_distance("window_minuts", "window_minutes"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(nearest("timezon", STUDY.iter().map(|f| f.name)), Some("timezone"));
        assert_eq!(nearest("baud_rate", SERIAL.iter().map(|f| f.name)), None);
    }

    #[test]
    fn every_problem_is_found_in_one_walk_in_plain_words() {
        let text = format!(
            "{MINIMAL}[mmtt]\nwindow_minuts = 5\nauc_from = \"0\"\ntimepoints = [0, 1.5, 9999999999]\nblq = \"half\"\n\
             [[serial]]\ninstrument = \"x\"\npath = \"/dev/x\"\nbaud = -1\nparty = \"none\"\n\
             [[instruments]]\nname = \"a\"\nsender = \"a\"\nkeep_comments = \"yes\"\n"
        );
        let f = findings(&text);
        let shown: Vec<(&str, &str)> = f.iter().map(|f| (f.key.as_str(), f.message.as_str())).collect();
        assert_eq!(
            shown,
            [
                ("mmtt.window_minuts", "unknown key; did you mean `window_minutes`?"),
                ("mmtt.auc_from", "must be a whole number, not text (\"0\")"),
                ("mmtt.timepoints[1]", "must be a whole number, not the number 1.5"),
                (
                    "mmtt.timepoints[2]",
                    "9999999999 is out of range: must be a whole number from -2147483648 to 2147483647"
                ),
                ("mmtt.blq", "\"half\" is not allowed: must be one of \"half_lloq\", \"lloq\", \"zero\""),
                ("serial[0].baud", "-1 is negative: must be a whole number, 0 or more"),
                ("serial[0].party", "unknown key; did you mean `parity`?"),
                ("instruments[0].keep_comments", "must be true or false, not text (\"yes\")"),
            ]
        );
    }

    #[test]
    fn missing_required_keys_and_wrong_shapes_are_named() {
        let f = findings("[study]\nid = 5\n[[storage]]\ndatabase = \"x\"\n[analytes.c_peptide]\nplausible = [1]\n");
        let keys: Vec<&str> = f.iter().map(|f| f.key.as_str()).collect();
        // In file order; a missing key points at its table's header.
        assert_eq!(
            keys,
            ["study.timezone", "study.id", "storage", "analytes.c_peptide.unit", "analytes.c_peptide.plausible"]
        );
        assert!(f.iter().any(|f| f.message == "must be a table, not a list"), "{f:?}");
        assert!(f.iter().any(|f| f.message == "is missing; it is required (text)"), "{f:?}");
    }

    #[test]
    fn spec_keys_not_yet_used_are_known() {
        let text = format!(
            "{MINIMAL}instance = \"lab-pc-1\"\n[audit]\nkey_file = \"/k\"\n[web]\naddress = \"127.0.0.1:8080\"\n\
             tls_cert = \"c\"\ntls_key = \"k\"\n[[listen]]\ninstrument = \"a\"\naddress = \"127.0.0.1:1\"\n\
             allow = [\"127.0.0.1\"]\nidle_seconds = 60\n"
        );
        assert_eq!(findings(&text), []);
        let f = findings(&format!("{MINIMAL}[[listen]]\ninstrument = \"a\"\naddress = \"b\"\nallow = [1]\n"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].message, "must be text, not the whole number 1");
        assert_eq!(describe(Kind::List(&Kind::Text)), "a list of text values");
    }
}
