//! TODO(policy agent): mesh_timeout schema.

use crate::schema::{Schema, required};

pub const SCHEMA: Schema = Schema::Object(&[required("spec", Schema::Any)]);
