//! TODO(policy agent): mesh_fault_injection schema.

use crate::schema::{Schema, required};

pub const SCHEMA: Schema = Schema::Object(&[required("spec", Schema::Any)]);
