//! TODO(policy agent): mesh_load_balancing_strategy schema.

use crate::schema::{Schema, required};

pub const SCHEMA: Schema = Schema::Object(&[required("spec", Schema::Any)]);
