//! TODO(schema agent): the zone resource schema.

use crate::schema::Schema;

pub const SCHEMA: Schema = Schema::Object(&[]);
