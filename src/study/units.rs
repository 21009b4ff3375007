//! Built-in unit conversion to each analyte's canonical unit (SPEC §3).
//!
//! Unit spellings are matched case-insensitively, with `u`, `µ` (U+00B5) and
//! `μ` (U+03BC) alike, so `ug/L`, `µg/l` and `μg/L` are one unit.

/// C-peptide molar mass 3020.29 g/mol: 1 ng/mL = 0.33109 nmol/L.
pub const CPEPTIDE_NMOL_PER_NG: f64 = 0.33109;
/// Glucose: 1 mmol/L = 18.016 mg/dL.
pub const GLUCOSE_MG_DL_PER_MMOL_L: f64 = 18.016;

/// The analytes whose conversions are built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownAnalyte {
    CPeptide,
    Glucose,
}

impl KnownAnalyte {
    /// The built-in analyte behind a config name (`c_peptide`, `glucose`).
    pub fn from_name(name: &str) -> Option<KnownAnalyte> {
        match name {
            "c_peptide" => Some(KnownAnalyte::CPeptide),
            "glucose" => Some(KnownAnalyte::Glucose),
            _ => None,
        }
    }

    /// The spellings this analyte's conversions know, for messages.
    pub fn known_units(self) -> &'static [&'static str] {
        match self {
            KnownAnalyte::CPeptide => &["nmol/L", "pmol/mL", "pmol/L", "ng/mL", "ug/L"],
            KnownAnalyte::Glucose => &["mmol/L", "mg/dL"],
        }
    }

    /// How many nmol/L (C-peptide) or mmol/L (glucose) one `unit` is.
    fn factor_to_base(self, unit: &str) -> Option<f64> {
        let unit = normalize_unit(unit);
        match (self, unit.as_str()) {
            (KnownAnalyte::CPeptide, "nmol/l" | "pmol/ml") => Some(1.0),
            (KnownAnalyte::CPeptide, "pmol/l") => Some(0.001),
            (KnownAnalyte::CPeptide, "ng/ml" | "ug/l") => Some(CPEPTIDE_NMOL_PER_NG),
            (KnownAnalyte::Glucose, "mmol/l") => Some(1.0),
            (KnownAnalyte::Glucose, "mg/dl") => Some(1.0 / GLUCOSE_MG_DL_PER_MMOL_L),
            _ => None,
        }
    }

    /// The factor that turns a value in `from` into one in `to`, if both are
    /// units of this analyte.
    pub fn factor(self, from: &str, to: &str) -> Option<f64> {
        Some(self.factor_to_base(from)? / self.factor_to_base(to)?)
    }
}

/// The factor that turns a value of `analyte` in `from` into one in `to`:
/// the built-in conversions, else 1 for the same unit spelled alike.
pub fn analyte_factor(analyte: &str, from: &str, to: &str) -> Option<f64> {
    match KnownAnalyte::from_name(analyte) {
        Some(known) => known.factor(from, to),
        None => (normalize_unit(from) == normalize_unit(to)).then_some(1.0),
    }
}

/// Lower-case, trimmed, with the micro signs folded to `u`.
pub fn normalize_unit(unit: &str) -> String {
    unit.trim().chars().map(|c| if c == 'µ' || c == 'μ' { 'u' } else { c }).collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_peptide_units_convert_with_the_molar_mass() {
        let cp = KnownAnalyte::CPeptide;
        assert_eq!(cp.factor("ng/mL", "nmol/L"), Some(0.33109));
        assert_eq!(cp.factor("µg/L", "nmol/L"), Some(0.33109));
        assert_eq!(cp.factor("μg/l", "nmol/L"), Some(0.33109));
        assert_eq!(cp.factor("UG/L", "nmol/L"), Some(0.33109));
        assert_eq!(cp.factor("pmol/mL", "nmol/L"), Some(1.0));
        assert_eq!(cp.factor("pmol/L", "nmol/L"), Some(0.001));
        assert!((cp.factor("nmol/L", "ng/mL").unwrap() - 3.02032).abs() < 1e-4);
        assert_eq!(cp.factor("mg/dL", "nmol/L"), None);
        assert_eq!(cp.factor("", "nmol/L"), None);
    }

    #[test]
    fn glucose_units_convert() {
        let g = KnownAnalyte::Glucose;
        assert!((g.factor("mg/dL", "mmol/L").unwrap() * 18.016 - 1.0).abs() < 1e-12);
        assert_eq!(g.factor("MMOL/L", "mmol/L"), Some(1.0));
        assert_eq!(g.factor("ng/mL", "mmol/L"), None);
    }
}
