//! Outcomes of optimization runs as plain data: what a run reports (an `optimization` job's
//! result, or `POST /api/v1/optimization/outcomes`), the request facts around it, and the
//! recorded outcome. Pure: the store writes and reads them, the engine computes metrics from
//! them.

use crate::rules::spec::HistoryRecord;
use serde::Serialize;
use serde_json::Value;

/// What a run reports: the fields of an `optimization` job's result, or of
/// `POST /api/v1/optimization/outcomes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Optimizer the run used.
    pub optimizer_used: String,
    /// Quality reached, 0..1.
    pub quality: f64,
    /// Actual cost in USD.
    pub actual_cost: Option<f64>,
    /// Actual time in minutes.
    pub actual_time_minutes: Option<f64>,
}

/// A field of a report that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field name.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn number(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<f64>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x >= 0.0 && x.is_finite() => Ok(Some(x)),
            _ => Err(FieldError {
                field,
                message: format!("`{field}` must be a number ≥ 0, found `{n}`"),
            }),
        },
        Some(other) => Err(FieldError {
            field,
            message: format!("`{field}` must be a number ≥ 0, found `{other}`"),
        }),
    }
}

/// Reads a run report out of a JSON object. `Ok(None)` when the object has no
/// `optimizer_used` (a job result that is not an outcome); an error names the first bad field.
pub fn parse_report(v: &Value) -> Result<Option<RunReport>, FieldError> {
    let Some(obj) = v.as_object() else {
        return Ok(None);
    };
    if !obj.contains_key("optimizer_used") {
        return Ok(None);
    }
    let optimizer_used = match obj.get("optimizer_used") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(other) => {
            return Err(FieldError {
                field: "optimizer_used",
                message: format!("`optimizer_used` must be an optimizer name, found `{other}`"),
            })
        }
        None => {
            return Err(FieldError {
                field: "optimizer_used",
                message: "`optimizer_used` is required with an outcome".into(),
            })
        }
    };
    let quality = match number(obj, "quality")? {
        Some(q) if q <= 1.0 => q,
        Some(q) => {
            return Err(FieldError {
                field: "quality",
                message: format!("`quality` must be between 0 and 1, found `{q}`"),
            })
        }
        None => {
            return Err(FieldError {
                field: "quality",
                message: "`quality` (0..1) is required with an outcome".into(),
            })
        }
    };
    Ok(Some(RunReport {
        optimizer_used,
        quality,
        actual_cost: number(obj, "actual_cost")?,
        actual_time_minutes: number(obj, "actual_time_minutes")?,
    }))
}

/// An outcome to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutcome {
    /// The run's report.
    pub report: RunReport,
    /// Decision that recommended the run, if any.
    pub decision_id: Option<i64>,
    /// Job of the run, if it was one.
    pub job_id: Option<String>,
    /// Request facts for runs without a decision (a decision's own input wins).
    pub context: RunContext,
}

/// Facts about the request behind a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunContext {
    /// Domain (default `general`).
    pub domain: Option<String>,
    /// Trainset size.
    pub trainset_size: Option<i64>,
    /// Budget in USD.
    pub budget: Option<f64>,
    /// Quality target.
    pub quality_target: Option<f64>,
    /// Model.
    pub model: Option<String>,
    /// Variant of the optimizer used (e.g. MIPROv2's `auto` level).
    pub variant: Option<String>,
    /// Whether the optimizer was chosen by the engine.
    pub auto_selected: bool,
    /// Estimated cost of the optimizer used, when known.
    pub estimated_cost: Option<f64>,
    /// Estimated time of the optimizer used, when known.
    pub estimated_time: Option<f64>,
}

impl RunContext {
    /// Reads the request facts from a JSON object (a decision input or a job payload).
    pub fn from_json(v: &Value) -> RunContext {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        RunContext {
            domain: s("domain"),
            trainset_size: v.get("trainset_size").and_then(Value::as_i64),
            budget: f("budget_usd")
                .or_else(|| f("budget_dollars"))
                .or_else(|| f("budget")),
            quality_target: f("quality_target"),
            model: s("model"),
            variant: s("variant"),
            auto_selected: v
                .get("auto_selected")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            estimated_cost: f("estimated_cost"),
            estimated_time: f("estimated_time_minutes"),
        }
    }
}

/// A recorded outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeRecord {
    /// Outcome id.
    pub id: i64,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    /// Linked decision.
    pub decision_id: Option<i64>,
    /// Linked job.
    pub job_id: Option<String>,
    /// Domain.
    pub domain: String,
    /// Optimizer the run used.
    pub optimizer_used: String,
    /// Optimizer the decision recommended.
    pub recommended: Option<String>,
    /// Rule of the decision.
    pub rule: Option<String>,
    /// Rules revision of the decision.
    pub revision: Option<String>,
    /// Trainset size.
    pub trainset_size: Option<i64>,
    /// Budget in USD.
    pub budget: Option<f64>,
    /// Quality target.
    pub quality_target: Option<f64>,
    /// Model.
    pub model: Option<String>,
    /// Variant of the optimizer used.
    pub variant: Option<String>,
    /// Estimated cost of the optimizer used.
    pub estimated_cost: Option<f64>,
    /// Estimated time of the optimizer used.
    pub estimated_time: Option<f64>,
    /// Actual cost.
    pub actual_cost: Option<f64>,
    /// Actual time in minutes.
    pub actual_time: Option<f64>,
    /// Quality reached.
    pub quality: f64,
    /// Chosen by the engine (true) or by hand.
    pub auto_selected: bool,
}

impl OutcomeRecord {
    /// The record as a line of `selector_metrics.jsonl`.
    pub fn to_history(&self) -> HistoryRecord {
        HistoryRecord {
            timestamp: Some(crate::util::time::rfc3339_ms(self.at_ms)),
            trainset_size: self.trainset_size,
            budget: self.budget,
            quality_target: self.quality_target,
            domain: self.domain.clone(),
            optimizer: self.optimizer_used.clone(),
            actual_cost: self.actual_cost,
            actual_time: self.actual_time,
            quality: self.quality,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_are_parsed_and_checked() {
        assert_eq!(parse_report(&json!({"score": 1})), Ok(None));
        assert_eq!(parse_report(&json!("done")), Ok(None));
        let r =
            parse_report(&json!({"optimizer_used": "gepa", "quality": 0.9, "actual_cost": 1.5}))
                .unwrap()
                .unwrap();
        assert_eq!(r.optimizer_used, "gepa");
        assert_eq!(r.actual_cost, Some(1.5));
        assert_eq!(r.actual_time_minutes, None);
        let e = parse_report(&json!({"optimizer_used": "gepa", "quality": 1.5})).unwrap_err();
        assert_eq!(e.field, "quality");
        assert_eq!(parse_report(&json!({"quality": 0.5})), Ok(None));
        let e = parse_report(&json!({"optimizer_used": 3, "quality": 0.5})).unwrap_err();
        assert_eq!(e.field, "optimizer_used");
        let e = parse_report(&json!({"optimizer_used": "gepa"})).unwrap_err();
        assert_eq!(e.field, "quality");
        let e = parse_report(&json!({"optimizer_used": "gepa", "quality": 0.5, "actual_cost": -1}))
            .unwrap_err();
        assert_eq!(e.field, "actual_cost");
        let e = parse_report(&json!({"optimizer_used": "gepa", "quality": "high"})).unwrap_err();
        assert_eq!(e.field, "quality");
    }

    #[test]
    fn context_reads_inputs_and_payloads() {
        let c = RunContext::from_json(&json!({
            "trainset_size": 200, "budget_dollars": 12.5, "domain": "web",
            "variant": "light", "auto_selected": true
        }));
        assert_eq!(c.trainset_size, Some(200));
        assert_eq!(c.budget, Some(12.5));
        assert_eq!(c.domain.as_deref(), Some("web"));
        assert_eq!(c.variant.as_deref(), Some("light"));
        assert!(c.auto_selected);
    }
}
