//! TODO(schema agent): the dataplane resource schema.

use crate::schema::Schema;

pub const SCHEMA: Schema = Schema::Object(&[]);
