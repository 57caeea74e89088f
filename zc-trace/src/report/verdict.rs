//! The vocabulary of claims and verdicts, as the claims file names them and the report's JSON
//! carries them: what a claim is about (`ClaimFigure`), the condition it holds under, and the
//! verdict on it. Judging is `claims`'; the report model holds the verdicts.

use serde::{Deserialize, Serialize};

/// What a claim is about, normalised so that it compares with per-call textbook numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimFigure {
    /// User<->kernel transitions per transfer call (per chunk).
    TransitionsPerCall,
    /// CPU copies of each payload byte.
    CpuCopies,
    /// Device (DMA) copies of each payload byte.
    DmaCopies,
    /// CPU + DMA copies of each payload byte.
    TotalCopies,
}

impl ClaimFigure {
    pub fn label(self) -> &'static str {
        match self {
            ClaimFigure::TransitionsPerCall => "user/kernel transitions per call",
            ClaimFigure::CpuCopies => "CPU copies",
            ClaimFigure::DmaCopies => "DMA copies",
            ClaimFigure::TotalCopies => "copies in total",
        }
    }
}

/// A run condition a claim is restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// The sink's route has scatter-gather.
    Sg,
    /// It has not.
    NoSg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Holds,
    Differs,
    NotObservable,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Holds => "HOLDS",
            Outcome::Differs => "DIFFERS",
            Outcome::NotObservable => "NOT OBSERVABLE HERE",
        }
    }

    /// The label without "HERE" (`trace --expect`'s line).
    pub fn short_label(self) -> &'static str {
        match self {
            Outcome::NotObservable => "NOT OBSERVABLE",
            other => other.label(),
        }
    }

    /// As the JSON names it.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Holds => "holds",
            Outcome::Differs => "differs",
            Outcome::NotObservable => "not_observable",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub strategy: crate::transfer::strategies::StrategyId,
    pub figure: ClaimFigure,
    pub when: Option<Condition>,
    #[serde(serialize_with = "crate::report::stat::serialize_number")]
    pub claimed: f64,
    /// Absent when not observable.
    #[serde(serialize_with = "crate::report::stat::serialize_opt_number")]
    pub observed: Option<f64>,
    pub verdict: Outcome,
    /// What the observed value is made of, or why it cannot be observed.
    pub reason: String,
    pub quote: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimsReport {
    pub source: String,
    pub verdicts: Vec<Verdict>,
}

impl ClaimsReport {
    pub fn any_differs(&self) -> bool {
        self.verdicts.iter().any(|v| v.verdict == Outcome::Differs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `trace`'s CSV and its JSON name a verdict the same way.
    #[test]
    fn outcome_names_are_the_json_names() {
        for o in [Outcome::Holds, Outcome::Differs, Outcome::NotObservable] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.name());
        }
    }
}
