//! TODO(policy agent): mesh_access_log schema.

use crate::schema::{Schema, required};

pub const SCHEMA: Schema = Schema::Object(&[required("spec", Schema::Any)]);
