//! TODO(policy agent): mesh_rate_limit schema.

use crate::schema::{Schema, required};

pub const SCHEMA: Schema = Schema::Object(&[required("spec", Schema::Any)]);
