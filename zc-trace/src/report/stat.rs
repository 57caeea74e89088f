//! Median and spread over iterations.

use serde::ser::{Serialize, SerializeStruct, Serializer};

#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Stat {
    pub fn of(samples: Vec<f64>) -> Option<Stat> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            samples,
        })
    }

    pub fn is_exact(&self) -> bool {
        self.min == self.max
    }
}

/// Whole numbers serialise as JSON integers (counts and bytes stay integers), others as floats.
pub fn number(v: f64) -> serde_json::Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        serde_json::Value::from(v as i64)
    } else {
        serde_json::Value::from(v)
    }
}

/// `number` as a serde `serialize_with`, for plain f64 fields (a claim's 2 is 2, not 2.0).
pub fn serialize_number<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    number(*v).serialize(s)
}

/// `serialize_number` for an optional field.
pub fn serialize_opt_number<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    v.map(number).serialize(s)
}

impl Serialize for Stat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Stat", 4)?;
        st.serialize_field("median", &number(self.median))?;
        st.serialize_field("min", &number(self.min))?;
        st.serialize_field("max", &number(self.max))?;
        let samples: Vec<_> = self.samples.iter().map(|v| number(*v)).collect();
        st.serialize_field("samples", &samples)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(Stat::of(vec![3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Stat::of(vec![4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        let s = Stat::of(vec![5.0, 9.0, 7.0]).unwrap();
        assert_eq!((s.min, s.max), (5.0, 9.0));
        assert_eq!(s.samples, vec![5.0, 9.0, 7.0], "samples keep run order");
        assert!(Stat::of(vec![]).is_none());
    }

    #[test]
    fn integers_stay_integers_in_json() {
        let s = Stat::of(vec![2049.0]).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["median"], serde_json::json!(2049));
        assert!(v["median"].is_u64());
        let s = Stat::of(vec![1.0, 2.0]).unwrap();
        assert_eq!(
            serde_json::to_value(&s).unwrap()["median"],
            serde_json::json!(1.5)
        );
    }
}
