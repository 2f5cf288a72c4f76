//! Domain types: parsed once at the edge, valid by construction afterwards.
//! Nothing here knows about HTTP, Redis or apalis.

mod filter;
mod job_id;
mod label;
mod names;
mod new_event;
mod new_job;
mod target;

pub use filter::{FilterError, PayloadFilter};
pub use job_id::{JobId, JobIdError};
pub use label::{Label, LabelError};
pub use names::{EndpointId, EventId, EventType, NameError, SourceId, TenantId};
pub use new_event::NewEvent;
pub use new_job::{FieldError, Limits, NewJob, NewJobError};
pub use target::{TargetUrl, TargetUrlError};
