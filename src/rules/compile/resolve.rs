//! Resolving a choice (optimizer, variant, config) against the catalog and the cost model.

use super::super::condition::child;
use super::super::spec::{Choice, CostSpec, OptimizerSpec, OptimizersSpec, Scalar};
use super::super::{Located, Resolved};
use crate::decision::Config;
use crate::diagnostic::{did_you_mean, Diagnostic};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Resolves optimizer names, variants and config against the catalog and cost model.
pub(super) struct Resolver<'a> {
    pub(super) opts: &'a OptimizersSpec,
    pub(super) cost: Option<&'a CostSpec>,
    pub(super) default_config: Arc<Config>,
}

impl Resolver<'_> {
    /// Resolves one choice; problems are pushed to `diags` and `None` returned.
    pub(super) fn resolve(
        &self,
        c: &Choice,
        ptr: &str,
        at: Located<'_>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Arc<Resolved>> {
        let before = diags.len();
        let Some(entry) = self.opts.catalog.get(&c.optimizer) else {
            self.unknown_optimizer(c, ptr, at, diags);
            return None;
        };
        let mut config = self.config(c, ptr, at, diags);
        let variant = self.variant(c, entry, &mut config, ptr, at, diags);
        let (mut usd, mut min, mut mult, mut params) = (0.0, 0.0, 1.0, BTreeMap::new());
        if let Some(cost) = self.cost {
            match cost.optimizers.get(&c.optimizer) {
                Some(oc) => {
                    usd = oc.usd_per_100;
                    min = oc.minutes_per_100;
                    params = oc.params.clone();
                    if let Some(v) = &variant {
                        mult = oc.variant_multipliers.get(v).copied().unwrap_or(1.0);
                    }
                }
                None => return None, // reported once by the cost checks
            }
        }
        if diags.len() > before {
            return None;
        }
        let label = match &variant {
            Some(v) => format!("{} ({v})", c.optimizer),
            None => c.optimizer.clone(),
        };
        let json_optimizer = serde_json::to_string(&c.optimizer)
            .unwrap_or_default()
            .into();
        let json_config = serde_json::to_string(&config).unwrap_or_default().into();
        Some(Arc::new(Resolved {
            json_optimizer,
            json_config,
            optimizer: c.optimizer.as_str().into(),
            label: label.as_str().into(),
            variant: variant.map(|v| v.as_str().into()),
            config: Arc::new(config),
            cost_factor: usd * mult,
            time_base: (min * mult).trunc(),
            params,
            usd_per_100: usd,
            minutes_per_100: min,
            variant_multiplier: mult,
        }))
    }

    /// Reports an optimizer missing from the catalog.
    fn unknown_optimizer(
        &self,
        c: &Choice,
        ptr: &str,
        at: Located<'_>,
        diags: &mut Vec<Diagnostic>,
    ) {
        diags.push(
            at.value(
                Diagnostic::error(format!("unknown optimizer `{}`", c.optimizer)),
                &format!("{ptr}/optimizer"),
            )
            .with_help_opt(
                did_you_mean(&c.optimizer, self.opts.catalog.keys().map(String::as_str)).or_else(
                    || {
                        Some(format!(
                            "optimizers in the catalog: {}",
                            self.opts
                                .catalog
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    },
                ),
            ),
        );
    }

    /// The default config with the choice's keys over it; unknown keys and keys of another
    /// type than their default are reported and left out.
    fn config(
        &self,
        c: &Choice,
        ptr: &str,
        at: Located<'_>,
        diags: &mut Vec<Diagnostic>,
    ) -> Config {
        let mut config: Config = (*self.default_config).clone();
        for (k, v) in &c.config {
            let kptr = child(&format!("{ptr}/config"), k);
            match self.default_config.get(k) {
                None => diags.push(
                    at.key(
                        Diagnostic::error(format!("unknown config key `{k}`")),
                        &kptr,
                    )
                    .with_help_opt(
                        did_you_mean(k, self.default_config.keys().map(String::as_str)).or_else(
                            || {
                                Some(
                                    "config keys are declared in `optimizers.default_config`"
                                        .into(),
                                )
                            },
                        ),
                    ),
                ),
                Some(d)
                    if std::mem::discriminant(d) != std::mem::discriminant(v)
                        && !matches!((d, v), (Scalar::Num(_), Scalar::Int(_))) =>
                {
                    diags.push(at.value(
                        Diagnostic::error(format!(
                            "config `{k}` has a different type than in `default_config`"
                        )),
                        &kptr,
                    ))
                }
                Some(_) => {
                    config.insert(k.clone(), v.clone());
                }
            }
        }
        config
    }

    /// The variant: the choice's, else the config's variant key; it must be one the catalog
    /// declares for the optimizer, and is written into the config.
    fn variant(
        &self,
        c: &Choice,
        entry: &OptimizerSpec,
        config: &mut Config,
        ptr: &str,
        at: Located<'_>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<String> {
        let key = &self.opts.variant_key;
        if entry.variants.is_empty() {
            if let Some(v) = &c.variant {
                diags.push(
                    at.value(
                        Diagnostic::error(format!(
                            "optimizer `{}` has no variants, but `{v}` is given",
                            c.optimizer
                        )),
                        &format!("{ptr}/variant"),
                    )
                    .with_help("remove `variant`, or declare `variants` for it in the catalog"),
                );
            }
            return None;
        }
        let given = c.variant.clone().or_else(|| match config.get(key) {
            Some(Scalar::Str(s)) => Some(s.clone()),
            _ => None,
        });
        match given {
            Some(v) if entry.variants.contains(&v) => {
                config.insert(key.clone(), Scalar::Str(v.clone()));
                Some(v)
            }
            Some(v) => {
                diags.push(
                    at.value(
                        Diagnostic::error(format!(
                            "optimizer `{}` has no variant `{v}`",
                            c.optimizer
                        )),
                        &format!("{ptr}/variant"),
                    )
                    .with_help_opt(
                        did_you_mean(&v, entry.variants.iter().map(String::as_str))
                            .or_else(|| Some(format!("variants: {}", entry.variants.join(", ")))),
                    ),
                );
                None
            }
            None => None,
        }
    }
}
