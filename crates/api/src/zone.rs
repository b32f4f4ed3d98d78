//! Zone: a zone control plane known to the global control plane. A user
//! takes a zone out of the multizone deployment with `enabled: false`.

use crate::schema::{Schema, optional};

pub const SCHEMA: Schema = Schema::Object(&[optional("enabled", Schema::Bool)]);
