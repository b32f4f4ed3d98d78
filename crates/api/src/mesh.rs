//! TODO(schema agent): the mesh resource schema.

use crate::schema::Schema;

pub const SCHEMA: Schema = Schema::Object(&[]);
