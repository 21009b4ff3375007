//! CDISC rules on the values labfeed puts into SDTM: test codes and names
//! (SDTMIG 3.4 LB notes), specimen types (SPECTYPE codelist C78734) and
//! what SAS XPORT v5 can hold. Checked when the configuration is loaded,
//! so an export never finds a bad code it could only mangle.

/// Common SPECTYPE terms (SDTM CT Q1 2025); the codelist is extensible, so
/// another upper-case ASCII term is accepted as a sponsor extension.
pub const SPECIMEN_TYPES: [&str; 5] = ["SERUM", "PLASMA", "SERUM OR PLASMA", "BLOOD", "CAPILLARY BLOOD"];

/// LBTESTCD: 1–8 ASCII letters, digits or `_`, not starting with a digit.
pub fn check_test_code(code: &str) -> Result<(), String> {
    if code.is_empty() || code.len() > 8 {
        return Err(format!("has {} characters: a test code has 1 to 8", code.chars().count()));
    }
    if !code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
        return Err("may hold only upper-case letters A-Z, digits and _".to_owned());
    }
    if code.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("starts with a digit: a test code must start with a letter or _".to_owned());
    }
    Ok(())
}

/// LBTEST: 1–40 printable ASCII characters.
pub fn check_test_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("is empty".to_owned());
    }
    if let Some(c) = name.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!("holds {c:?}: SAS XPORT v5 takes printable ASCII only"));
    }
    if name.len() > 40 {
        return Err(format!("has {} characters: a test name has at most 40", name.len()));
    }
    Ok(())
}

/// LBSPEC: a SPECTYPE term. A common term in another spelling is refused
/// with the term to use; anything else must look like a term (upper-case
/// ASCII letters, digits, spaces, `,` and `-`).
pub fn check_specimen(specimen: &str) -> Result<(), String> {
    if SPECIMEN_TYPES.contains(&specimen) {
        return Ok(());
    }
    let words = |s: &str| {
        s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_uppercase).collect::<Vec<_>>()
    };
    let given = words(specimen);
    if let Some(term) = SPECIMEN_TYPES.iter().find(|t| words(t) == given || given.first().is_some_and(|w| *w == **t)) {
        return Err(format!("{specimen:?} is not a CDISC SPECTYPE term: write {term:?}"));
    }
    if given.is_empty()
        || !specimen.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || " ,-".contains(c))
        || specimen.len() > 200
    {
        return Err(format!(
            "{specimen:?} is not a CDISC SPECTYPE term such as {}: upper-case ASCII, at most 200 characters",
            SPECIMEN_TYPES.map(|t| format!("{t:?}")).join(", ")
        ));
    }
    Ok(())
}

/// A specimen type as a message names it (HL7 SPM-4 as `code^text^…`,
/// HL7 table 0487 codes such as `SER`, `PLAS`, `BLDC`, or their text) as a
/// SPECTYPE term: the first component that is a common one.
pub fn specimen_from_message(sent: &str) -> Option<&'static str> {
    sent.split('^').find_map(|component| {
        let upper = component.trim().to_ascii_uppercase();
        let upper = upper.strip_suffix(" SPECIMEN").unwrap_or(&upper);
        Some(match upper {
            "SER" | "SERUM" => "SERUM",
            "PLAS" | "PLASMA" | "PLS" => "PLASMA",
            "SER/PLAS" | "SERPL" | "SERUM OR PLASMA" | "SERUM/PLASMA" => "SERUM OR PLASMA",
            "BLD" | "BLOOD" | "WB" | "WHOLE BLOOD" => "BLOOD",
            "BLDC" | "CAPILLARY BLOOD" | "BLOOD CAPILLARY" => "CAPILLARY BLOOD",
            _ => return None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_codes_follow_the_sdtm_rule() {
        for good in ["CPEPTIDE", "GLUC", "VITD25OH", "_X", "A1"] {
            assert_eq!(check_test_code(good), Ok(()), "{good}");
        }
        for bad in ["25OHVITA", "PROINSULI", "", "cpep", "C-PEP", "GLÜC"] {
            assert!(check_test_code(bad).is_err(), "{bad}");
        }
        assert!(check_test_code("25OHVITA").unwrap_err().contains("digit"));
    }

    #[test]
    fn test_names_are_short_printable_ascii() {
        assert_eq!(check_test_name("C-peptide"), Ok(()));
        assert!(check_test_name(&"x".repeat(41)).unwrap_err().contains("41"));
        assert_eq!(check_test_name(&"x".repeat(40)), Ok(()));
        assert!(check_test_name("Glukos (fP) µ").is_err());
        assert!(check_test_name(" ").is_err());
    }

    #[test]
    fn specimens_are_spectype_terms_and_near_misses_name_the_term() {
        for good in ["SERUM", "PLASMA", "CAPILLARY BLOOD", "URINE"] {
            assert_eq!(check_specimen(good), Ok(()), "{good}");
        }
        assert_eq!(
            check_specimen("Plasma (EDTA)").unwrap_err(),
            "\"Plasma (EDTA)\" is not a CDISC SPECTYPE term: write \"PLASMA\""
        );
        assert!(check_specimen("serum").unwrap_err().contains("\"SERUM\""));
        assert!(check_specimen("Urin").unwrap_err().contains("upper-case"));
        assert!(check_specimen(" ").is_err());
    }

    #[test]
    fn message_specimen_codes_map_to_terms() {
        assert_eq!(specimen_from_message("SER"), Some("SERUM"));
        assert_eq!(specimen_from_message("SER^Serum^HL70487"), Some("SERUM"));
        assert_eq!(specimen_from_message("26^Serum"), Some("SERUM"));
        assert_eq!(specimen_from_message("plas"), Some("PLASMA"));
        assert_eq!(specimen_from_message("BLD"), Some("BLOOD"));
        assert_eq!(
            specimen_from_message("122554006^Capillary blood specimen^SCT^BLDC^Blood capillary^HL70070"),
            Some("CAPILLARY BLOOD")
        );
        assert_eq!(specimen_from_message("UR^Urine"), None);
    }
}
