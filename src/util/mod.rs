//! Small shared helpers of every layer, with no dependency on any of them: Python's rounding
//! ([`round`]), JSON numbers and strings written by hand ([`json`]), and timestamps and ages
//! as text ([`time`]).

pub mod json;
pub mod round;
pub mod schema_check;
pub mod time;
pub mod unique_json;
