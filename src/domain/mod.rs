//! Domain types: parsed once at the edge, valid by construction afterwards.
//! Nothing here knows about HTTP, Redis or apalis.

mod job_id;
mod label;
mod new_job;
mod target;

pub use job_id::{JobId, JobIdError};
pub use label::{Label, LabelError};
pub use new_job::{FieldError, Limits, NewJob, NewJobError};
pub use target::{TargetUrl, TargetUrlError};
