//! The shared test harness (`tests/common`, also used by the browser suite), under the
//! name the files of this suite import it by.
pub use crate::common::*;
