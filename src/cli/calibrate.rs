//! `skill-fleet rules calibrate`: proposes new cost and time constants per optimizer from the
//! recorded outcomes, as a patch to the rule files. Nothing is applied.

use super::store_args::resolve_path;
use super::{CliError, Exit};
use crate::diagnostic::SourceFile;
use crate::engine::calibrate::{propose, Proposal};
use crate::rules::spec::CostSpec;
use crate::rules::yaml;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `rules calibrate`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each outcome implies a constant: its actual cost divided by the variant multiplier, \
the model's cost multiplier and trainset_size / 100 (time likewise). The proposal is the median, \
with the number of outcomes behind it. The patch is printed, never applied:\n  \
skill-fleet rules calibrate > calibrate.txt\n  skill-fleet rules calibrate --patch-only | git apply"
)]
pub struct CalibrateArgs {
    /// SQLite file or `postgres://` URL [default: database.path from the config file, or
    /// SKILL_FLEET_DB]
    #[arg(long, value_name = "PATH|URL")]
    pub db: Option<PathBuf>,
    /// Outcomes recorded within this age (30d, 12h, 2w) or `all`.
    #[arg(long, value_name = "AGE", default_value = "all")]
    pub since: String,
    /// Fewest outcomes behind a constant before the patch changes it.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_samples: u64,
    /// Print only the patch (for `git apply`).
    #[arg(long)]
    pub patch_only: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = super::store_args::Format::Human)]
    pub format: super::store_args::Format,
}

/// Formats a constant the way a person would write it in YAML.
fn number(x: f64) -> String {
    format!("{x}")
}

/// Replaces the plain scalar starting at (line, col) (1-based) in `text`.
fn replace_scalar(lines: &mut [String], line: usize, col: usize, value: &str) -> bool {
    let Some(l) = lines.get_mut(line.wrapping_sub(1)) else {
        return false;
    };
    let start: usize = l
        .chars()
        .take(col.saturating_sub(1))
        .map(char::len_utf8)
        .sum();
    if start > l.len() {
        return false;
    }
    let rest = &l[start..];
    let len = rest
        .find([',', '}', ']', ' ', '\t', '#'])
        .unwrap_or(rest.len());
    if rest[..len].parse::<f64>().is_err() {
        return false;
    }
    l.replace_range(start..start + len, value);
    true
}

/// A unified diff of two texts with the same number of lines (values replaced in place).
pub fn unified_diff(path: &str, old: &[String], new: &[String]) -> String {
    let changed: Vec<usize> = (0..old.len().min(new.len()))
        .filter(|i| old[*i] != new[*i])
        .collect();
    if changed.is_empty() {
        return String::new();
    }
    let ctx = 2;
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &i in &changed {
        let (a, b) = (i.saturating_sub(ctx), (i + ctx + 1).min(old.len()));
        match hunks.last_mut() {
            Some(last) if a <= last.1 => last.1 = b,
            _ => hunks.push((a, b)),
        }
    }
    let mut s = format!("--- a/{path}\n+++ b/{path}\n");
    for (a, b) in hunks {
        s.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            a + 1,
            b - a,
            a + 1,
            b - a
        ));
        for i in a..b {
            if old[i] == new[i] {
                s.push_str(&format!(" {}\n", old[i]));
            } else {
                s.push_str(&format!("-{}\n+{}\n", old[i], new[i]));
            }
        }
    }
    s
}

struct CostFile {
    file: SourceFile,
    spans: yaml::SpanIndex,
    spec: CostSpec,
}

fn cost_file(files: &[SourceFile]) -> Option<CostFile> {
    for f in files
        .iter()
        .filter(|f| f.path.ends_with(".yaml") || f.path.ends_with(".yml"))
    {
        let Ok(parsed) = yaml::parse(f) else { continue };
        let Some(cost) = parsed.value.get("cost") else {
            continue;
        };
        if let Ok(spec) = serde_json::from_value::<CostSpec>(cost.clone()) {
            return Some(CostFile {
                file: f.clone(),
                spans: parsed.spans,
                spec,
            });
        }
    }
    None
}

/// The patch that sets every proposal with enough samples.
fn patch(cf: &CostFile, proposals: &[Proposal], min: u64) -> String {
    let old: Vec<String> = cf.file.text.lines().map(str::to_string).collect();
    let mut new = old.clone();
    let mut edits = Vec::new();
    for p in proposals {
        let name = yaml::escape_segment(&p.optimizer);
        for (key, c) in [
            ("usd_per_100", &p.usd_per_100),
            ("minutes_per_100", &p.minutes_per_100),
        ] {
            let (Some(v), true) = (c.proposed, c.samples as u64 >= min) else {
                continue;
            };
            if let Some(span) = cf.spans.exact(&format!("/cost/optimizers/{name}/{key}")) {
                edits.push((span.pos.line, span.pos.col, number(v)));
            }
        }
    }
    // Right to left, so an edit never shifts the column of one still to come.
    edits.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    for (line, col, text) in edits {
        replace_scalar(&mut new, line, col, &text);
    }
    // Paths in the patch are relative to the working directory when they are under it, so
    // `git apply` takes it from the repository root.
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            Path::new(&cf.file.path)
                .strip_prefix(&cwd)
                .ok()
                .map(|p| p.display().to_string())
        })
        .unwrap_or_else(|| cf.file.path.clone());
    unified_diff(&shown, &old, &new)
}

/// Runs `rules calibrate`.
pub fn run(dir: &Path, a: CalibrateArgs, out: &mut dyn Write) -> Result<Exit, CliError> {
    let age = crate::util::time::parse_age(&a.since)
        .map_err(|m| CliError::usage(format!("invalid --since: {m}")))?;
    let files = crate::loader::read_dir(dir)?;
    if let Err(diags) = crate::rules::build(&files) {
        return Err(CliError::rules(diags, files));
    }
    let Some(cf) = cost_file(&files) else {
        return Err(CliError::new(
            Exit::InvalidRules,
            format!("no `cost:` section with optimizers in `{}`", dir.display()),
        ));
    };
    let path = resolve_path(a.db.as_deref())?;
    let store = super::store_args::open_read(&path)?;
    let since_ms = age.map_or(i64::MIN, |x| store.now_ms().saturating_sub(x));
    let outcomes = store.outcomes_since(since_ms);
    let _ = store.close();
    let outcomes = outcomes?;
    let proposals = propose(&cf.spec, &outcomes);
    let diff = patch(&cf, &proposals, a.min_samples);
    if a.patch_only {
        let _ = out.write_all(diff.as_bytes());
        return Ok(Exit::Ok);
    }
    if a.format == super::store_args::Format::Json {
        let v = serde_json::json!({
            "outcomes": outcomes.len(),
            "min_samples": a.min_samples,
            "proposals": proposals,
            "patch": diff,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        );
        return Ok(Exit::Ok);
    }
    let _ = writeln!(
        out,
        "calibration from {} outcome{} ({}) in `{}`; nothing is applied\n",
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "s" },
        if age.is_none() {
            "all time".to_string()
        } else {
            format!("last {}", a.since)
        },
        crate::store::display_location(&path)
    );
    if proposals.is_empty() {
        let _ = writeln!(
            out,
            "no outcome with a trainset size and an actual cost or time for an optimizer of the cost table"
        );
        return Ok(Exit::Ok);
    }
    let _ = writeln!(
        out,
        "{:<20} {:<16} {:>8} {:>9} {:>8}",
        "optimizer", "constant", "now", "proposed", "samples"
    );
    for p in &proposals {
        for (key, c) in [
            ("usd_per_100", &p.usd_per_100),
            ("minutes_per_100", &p.minutes_per_100),
        ] {
            let proposed = c.proposed.map_or("-".to_string(), number);
            let note = if c.proposed.is_some() && (c.samples as u64) < a.min_samples {
                format!(
                    "  (below --min-samples {}: not in the patch)",
                    a.min_samples
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{:<20} {:<16} {:>8} {:>9} {:>8}{note}",
                p.optimizer,
                key,
                number(c.current),
                proposed,
                c.samples
            );
        }
    }
    if diff.is_empty() {
        let _ = writeln!(out, "\nno constant has enough samples to change");
    } else {
        let _ = writeln!(out, "\npatch (apply with `git apply`):\n{diff}");
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_replaced_in_flow_and_block_style() {
        let mut lines = vec![
            "    gepa: {usd_per_100: 0.50, minutes_per_100: 5}".to_string(),
            "      usd_per_100: 2.50  # note".to_string(),
        ];
        assert!(replace_scalar(&mut lines, 1, 25, "0.612"));
        assert!(replace_scalar(&mut lines, 2, 20, "3"));
        assert_eq!(
            lines[0],
            "    gepa: {usd_per_100: 0.612, minutes_per_100: 5}"
        );
        assert_eq!(lines[1], "      usd_per_100: 3  # note");
        assert!(
            !replace_scalar(&mut lines, 2, 7, "1"),
            "a key is not a number"
        );
    }

    #[test]
    fn diffs_have_context_and_merged_hunks() {
        let old: Vec<String> = (1..=10).map(|i| format!("l{i}")).collect();
        let mut new = old.clone();
        new[3] = "x4".into();
        new[5] = "x6".into();
        let d = unified_diff("r/c.yaml", &old, &new);
        assert_eq!(
            d,
            "--- a/r/c.yaml\n+++ b/r/c.yaml\n@@ -2,7 +2,7 @@\n l2\n l3\n-l4\n+x4\n l5\n-l6\n+x6\n l7\n l8\n"
        );
        assert_eq!(number(5.0), "5");
        assert_eq!(number(0.612), "0.612");
    }
}
