//! The checks that run a rule set above the engine: its fixtures ([`fixtures`]), their
//! coverage ([`coverage`]), rule analysis for `rules check` ([`analysis`]) and the impact of a
//! change (`rules diff`, [`impact`]). Pure: no I/O, no clock.

pub mod analysis;
pub mod coverage;
pub mod fixtures;
pub mod impact;
pub mod map;
